import type { Queue } from 'bullmq';
import { z } from 'zod';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../domain/audit-actions';
import { defaultJobOptions, jobId } from './job-options';

const opaqueId = z
  .string()
  .min(1)
  .max(120)
  .regex(/^[A-Za-z0-9_.@|+-]+$/, 'opaque ids only');

/**
 * An audit event as it travels to the audit worker. Only opaque ids and codes:
 * no free text, no PHI, no secret, because Redis is not encrypted at rest.
 */
export const auditJobSchema = z
  .object({
    eventId: opaqueId,
    companyId: opaqueId,
    officeId: opaqueId.optional(),
    action: z.enum(AUDIT_ACTIONS),
    outcome: z.enum(AUDIT_OUTCOMES),
    actor: z.object({ type: z.enum(['user', 'service', 'system']), id: opaqueId }).strict(),
    resource: z.object({ type: z.string().regex(/^[a-z_]+$/), id: opaqueId }).strict(),
    reason: z
      .string()
      .regex(/^[a-z0-9_]+$/, 'a reason code, not free text')
      .max(64)
      .optional(),
    requestId: opaqueId.optional(),
    jobId: opaqueId.optional(),
    occurredAt: z.string().datetime(),
  })
  .strict();
export type AuditJob = z.infer<typeof auditJobSchema>;

export const AUDIT_JOB_NAME = 'append';

// Audit writes must survive a MongoDB outage: keep retrying for about an hour.
export const auditJobOptions = defaultJobOptions({ attempts: 20, backoffDelayMs: 1_000 });

export async function enqueueAuditEvent(queue: Queue<AuditJob>, event: AuditJob): Promise<void> {
  const data = auditJobSchema.parse(event);
  await queue.add(AUDIT_JOB_NAME, data, { ...auditJobOptions, jobId: jobId('audit', data.eventId) });
}
