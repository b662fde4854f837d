import { type Job, type Worker } from 'bullmq';
import type { AuditEvent } from '../domain/audit-event';
import type { AppendResult, AuditTrail } from '../models/audit-trail';
import type { Logger } from '../platform/logger';
import { auditQueueJobSchema, eventsOfAuditJob, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';
import { createQueueWorker, JobFailedError, type QueueWorkerOptions } from './queue-worker';

export interface AuditDeps {
  auditTrail: Pick<AuditTrail, 'appendMany'>;
  logger: Logger;
  /**
   * After the append (a first one or a redelivery's duplicate), for each event in order: derives the outgoing webhook
   * event, if the action is in the catalog (application/outgoing-webhooks/emit-event.ts). Idempotent; if it throws,
   * the job is retried.
   */
  onAppended?: (event: AuditEvent) => Promise<unknown>;
}

/**
 * The only writer of audit events: appends a job's events (one, or a batch of one outcome) to their companies' hash
 * chains, the consecutive events of one chain in one write. A redelivered job stores nothing twice (the event id is
 * the key). If MongoDB is down the append throws and BullMQ retries with backoff until it is back.
 */
export async function processAuditEvent(job: Job<AuditJob>, deps: AuditDeps): Promise<AppendResult[]> {
  const parsed = auditQueueJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid audit job payload');
  const events = eventsOfAuditJob(parsed.data);
  // A failed append is logged by the worker's `failed` listener (workers/main.ts), with the job id naming the event.
  const byCompany = new Map<string, AuditEvent[]>();
  for (const event of events) byCompany.set(event.companyId, [...(byCompany.get(event.companyId) ?? []), event]);
  const results: AppendResult[] = [];
  for (const [companyId, chain] of byCompany) results.push(...(await deps.auditTrail.appendMany(companyId, chain)));
  if (deps.onAppended) for (const event of events) await deps.onAppended(event);
  return results;
}

export function createAuditWorker(deps: AuditDeps & QueueWorkerOptions): Worker<AuditJob, AppendResult[]> {
  return createQueueWorker(QUEUE_NAMES.audit, processAuditEvent, deps);
}
