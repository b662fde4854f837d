import { type Job, type Worker } from 'bullmq';
import { appendAuditEvents, type AppendAuditDeps } from '../application/audit/append-events';
import type { AppendResult } from '../models/audit-trail';
import type { Logger } from '../platform/logger';
import { auditQueueJobSchema, eventsOfAuditJob, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';
import { createQueueWorker, JobFailedError, type QueueWorkerOptions } from './queue-worker';

export interface AuditDeps extends AppendAuditDeps {
  logger: Logger;
}

/**
 * Appends a queued job's events (one, or a batch of one outcome) to their companies' hash chains, the consecutive
 * events of one chain in one write: the api's and most workers' events; a charge or a renewal appends its outcome's in
 * its own job and queues them only when that fails (application/audit/append-events.ts). A redelivered job stores
 * nothing twice (the event id is the key). If MongoDB is down the append throws and BullMQ retries with backoff until
 * it is back.
 */
export async function processAuditEvent(job: Job<AuditJob>, deps: AuditDeps): Promise<AppendResult[]> {
  const parsed = auditQueueJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid audit job payload');
  // A failed append is logged by the worker's `failed` listener (workers/main.ts), with the job id naming the event.
  return appendAuditEvents(deps, eventsOfAuditJob(parsed.data));
}

export function createAuditWorker(deps: AuditDeps & QueueWorkerOptions): Worker<AuditJob, AppendResult[]> {
  return createQueueWorker(QUEUE_NAMES.audit, processAuditEvent, deps);
}
