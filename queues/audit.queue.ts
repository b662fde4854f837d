import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import { z } from 'zod';
import { auditEventSchema, type AuditEvent, type AuditEventInput } from '../domain/audit-event';
import { defaultJobOptions, jobId } from './job-options';

/** One event: the job is the event itself (domain/audit-event.ts), ids and codes only. */
export const auditJobSchema = auditEventSchema;
export type { AuditEvent, AuditEventInput };

/** The most events one job carries (an outcome has a handful; the bound keeps a job small). */
export const MAX_AUDIT_BATCH = 50;

/** Several events of one outcome in one job, appended in order (consecutive events of a chain in one write). */
export const auditBatchJobSchema = z.object({ events: z.array(auditEventSchema).min(1).max(MAX_AUDIT_BATCH) }).strict();
export type AuditBatchJob = z.infer<typeof auditBatchJobSchema>;

/** What the audit queue carries: a single event (every emitter before batches, still accepted) or a batch. */
export const auditQueueJobSchema = z.union([auditEventSchema, auditBatchJobSchema]);
export type AuditJob = AuditEvent | AuditBatchJob;

export const AUDIT_JOB_NAME = 'append';
export const AUDIT_BATCH_JOB_NAME = 'append-batch';

// Audit writes must survive a MongoDB outage: exponential retries for days, then ops see the failed job.
export const auditJobOptions = defaultJobOptions({ attempts: 20, backoffDelayMs: 1_000 });

/** The events a job carries, in order. */
export function eventsOfAuditJob(job: AuditJob): AuditEvent[] {
  return 'events' in job ? job.events : [job];
}

/** One job per event: a second enqueue of an event (a retry, the outbox sweep) adds nothing while its job is kept. */
export function auditJobId(eventId: string): string {
  return jobId('audit', eventId);
}

/** A batch's job id is fixed by its events: the same batch sent again (a retried job) adds nothing while it is kept. */
export function auditBatchJobId(eventIds: readonly string[]): string {
  return jobId('audit-batch', createHash('sha256').update(eventIds.join('\n')).digest('hex').slice(0, 40));
}

export async function enqueueAuditEvent(queue: Queue<AuditJob>, event: AuditEventInput): Promise<void> {
  const data = auditJobSchema.parse(event);
  await queue.add(AUDIT_JOB_NAME, data, { ...auditJobOptions, jobId: auditJobId(data.eventId) });
}

/**
 * Queues the events of one outcome: one event as its own job (the job id every other emitter of it uses), several in
 * one batch job (one Redis add, one job, one ordered insert per company's chain). Every event is kept by id, so an
 * event sent both alone and in a batch is stored once.
 */
export async function enqueueAuditEvents(queue: Queue<AuditJob>, events: readonly AuditEventInput[]): Promise<void> {
  if (events.length === 0) return;
  if (events.length === 1) return enqueueAuditEvent(queue, events[0]!);
  for (let start = 0; start < events.length; start += MAX_AUDIT_BATCH) {
    const data = auditBatchJobSchema.parse({ events: events.slice(start, start + MAX_AUDIT_BATCH) });
    const id = auditBatchJobId(data.events.map((event) => event.eventId));
    await queue.add(AUDIT_BATCH_JOB_NAME, data, { ...auditJobOptions, jobId: id });
  }
}
