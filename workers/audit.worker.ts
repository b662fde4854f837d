import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';
import { Binary } from 'mongodb';
import type { Models } from '../models';
import type { Logger } from '../platform/logger';
import { auditJobSchema, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';

export interface AuditDeps {
  models: Pick<Models, 'AuditEvent'>;
  logger: Logger;
}

export interface AuditResult {
  eventId: string;
  /** The event was stored by an earlier delivery of the same job. */
  duplicate: boolean;
}

function isDuplicateKeyError(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 11000;
}

/**
 * The only writer of audit events. Insert-only; the event id is the primary
 * key, so a redelivered job stores nothing twice. If MongoDB is down the insert
 * throws and BullMQ retries with backoff until it is back: nothing is lost.
 */
export async function processAuditEvent(job: Job<AuditJob>, deps: AuditDeps): Promise<AuditResult> {
  const parsed = auditJobSchema.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError('invalid audit job payload');
  const event = parsed.data;
  try {
    await deps.models.AuditEvent.create({
      _id: event.eventId,
      companyId: event.companyId,
      officeId: event.officeId,
      action: event.action,
      outcome: event.outcome,
      severity: event.severity,
      actor: event.actor,
      resource: event.resource,
      reason: event.reason,
      route: event.route,
      permission: event.permission,
      accessReason: event.accessReasonCiphertext
        ? new Binary(Buffer.from(event.accessReasonCiphertext, 'base64'), Binary.SUBTYPE_ENCRYPTED)
        : undefined,
      requestId: event.requestId,
      jobId: event.jobId,
      occurredAt: new Date(event.occurredAt),
      recordedAt: new Date(),
    });
    return { eventId: event.eventId, duplicate: false };
  } catch (error) {
    if (isDuplicateKeyError(error)) return { eventId: event.eventId, duplicate: true };
    deps.logger.warn(
      { queue: QUEUE_NAMES.audit, jobId: job.id, eventId: event.eventId, err: error },
      'audit write failed; will retry',
    );
    throw error;
  }
}

export function createAuditWorker(
  deps: AuditDeps & { connection: ConnectionOptions; prefix: string; concurrency: number },
): Worker<AuditJob, AuditResult> {
  return new Worker<AuditJob, AuditResult>(QUEUE_NAMES.audit, (job) => processAuditEvent(job, deps), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
  });
}
