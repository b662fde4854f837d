import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import type { AppendResult, AuditTrail } from '../models/audit-trail';
import type { Logger } from '../platform/logger';
import { auditJobSchema, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';

export interface AuditDeps {
  auditTrail: Pick<AuditTrail, 'append'>;
  logger: Logger;
}

/**
 * The only writer of audit events: appends each to its company's hash chain.
 * A redelivered job stores nothing twice (the event id is the key). If MongoDB
 * is down the append throws and BullMQ retries with backoff until it is back.
 */
export async function processAuditEvent(job: Job<AuditJob>, deps: AuditDeps): Promise<AppendResult> {
  const parsed = auditJobSchema.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError('invalid audit job payload');
  try {
    return await deps.auditTrail.append(parsed.data);
  } catch (error) {
    deps.logger.warn(
      {
        queue: QUEUE_NAMES.audit,
        jobId: job.id,
        eventId: parsed.data.eventId,
        attempt: job.attemptsMade + 1,
        err: error,
      },
      'audit append failed; will retry',
    );
    throw error;
  }
}

export function createAuditWorker(
  deps: AuditDeps & { connection: ConnectionOptions; prefix: string; concurrency: number },
): Worker<AuditJob, AppendResult> {
  return new Worker<AuditJob, AppendResult>(QUEUE_NAMES.audit, (job) => processAuditEvent(job, deps), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
  });
}
