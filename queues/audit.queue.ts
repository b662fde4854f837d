import type { Queue } from 'bullmq';
import { z } from 'zod';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES, AUDIT_SEVERITIES } from '../domain/audit-actions';
import { PERMISSIONS } from '../domain/access-policy';
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
    severity: z.enum(AUDIT_SEVERITIES).default('info'),
    actor: z.object({ type: z.enum(['user', 'service', 'system', 'anonymous']), id: opaqueId }).strict(),
    resource: z.object({ type: z.string().regex(/^[a-z_]+$/), id: opaqueId }).strict(),
    reason: z
      .string()
      .regex(/^[a-z0-9_]+$/, 'a reason code, not free text')
      .max(64)
      .optional(),
    /** The route pattern (never the concrete URL with its query) and the permission it needed. */
    route: z
      .string()
      .regex(/^[A-Z]+ \/[A-Za-z0-9/:_-]*$/)
      .max(200)
      .optional(),
    permission: z.enum(PERMISSIONS).optional(),
    requestId: opaqueId.optional(),
    jobId: opaqueId.optional(),
    /** Free text (an emergency access reason) travels only as ciphertext under the company's data key. */
    accessReasonCiphertext: z.string().base64().max(4_096).optional(),
    occurredAt: z.string().datetime(),
  })
  .strict();
export type AuditJob = z.infer<typeof auditJobSchema>;
/** What emitters pass: defaults (severity) may be left out. */
export type AuditEventInput = z.input<typeof auditJobSchema>;

export const AUDIT_JOB_NAME = 'append';

// Audit writes must survive a MongoDB outage: keep retrying for about an hour.
export const auditJobOptions = defaultJobOptions({ attempts: 20, backoffDelayMs: 1_000 });

export async function enqueueAuditEvent(queue: Queue<AuditJob>, event: AuditEventInput): Promise<void> {
  const data = auditJobSchema.parse(event);
  await queue.add(AUDIT_JOB_NAME, data, { ...auditJobOptions, jobId: jobId('audit', data.eventId) });
}
