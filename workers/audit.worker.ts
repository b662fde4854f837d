import { type Job, type Worker } from 'bullmq';
import type { AppendResult, AuditTrail } from '../models/audit-trail';
import type { Logger } from '../platform/logger';
import { auditJobSchema, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';
import { createQueueWorker, JobFailedError, type QueueWorkerOptions } from './queue-worker';

export interface AuditDeps {
  auditTrail: Pick<AuditTrail, 'append'>;
  logger: Logger;
  /**
   * After the append (a first one or a redelivery's duplicate): derives the outgoing webhook event, if the action is
   * in the catalog (application/outgoing-webhooks/emit-event.ts). Idempotent; if it throws, the job is retried.
   */
  onAppended?: (event: AuditJob) => Promise<unknown>;
}

/**
 * The only writer of audit events: appends each to its company's hash chain.
 * A redelivered job stores nothing twice (the event id is the key). If MongoDB
 * is down the append throws and BullMQ retries with backoff until it is back.
 */
export async function processAuditEvent(job: Job<AuditJob>, deps: AuditDeps): Promise<AppendResult> {
  const parsed = auditJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid audit job payload');
  // A failed append is logged by the worker's `failed` listener (workers/main.ts), with the job id naming the event.
  const result = await deps.auditTrail.append(parsed.data);
  await deps.onAppended?.(parsed.data);
  return result;
}

export function createAuditWorker(deps: AuditDeps & QueueWorkerOptions): Worker<AuditJob, AppendResult> {
  return createQueueWorker(QUEUE_NAMES.audit, processAuditEvent, deps);
}
