import type { Queue } from 'bullmq';
import { auditEventSchema, type AuditEvent, type AuditEventInput } from '../domain/audit-event';
import { defaultJobOptions, jobId } from './job-options';

/** The job is the event itself (domain/audit-event.ts): ids and codes only. */
export const auditJobSchema = auditEventSchema;
export type AuditJob = AuditEvent;
export type { AuditEventInput };

export const AUDIT_JOB_NAME = 'append';

// Audit writes must survive a MongoDB outage: exponential retries for days, then ops see the failed job.
export const auditJobOptions = defaultJobOptions({ attempts: 20, backoffDelayMs: 1_000 });

/** One job per event: a second enqueue of an event (a retry, the outbox sweep) adds nothing while its job is kept. */
export function auditJobId(eventId: string): string {
  return jobId('audit', eventId);
}

export async function enqueueAuditEvent(queue: Queue<AuditJob>, event: AuditEventInput): Promise<void> {
  const data = auditJobSchema.parse(event);
  await queue.add(AUDIT_JOB_NAME, data, { ...auditJobOptions, jobId: auditJobId(data.eventId) });
}
