import { z } from 'zod';
import { PERMISSIONS, ROLES } from './access-policy';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES, AUDIT_SEVERITIES } from './audit-actions';

/** An id we or a caller chose that carries no meaning beyond identity: what audit events and scopes are built from. */
export const opaqueId = z
  .string()
  .min(1)
  .max(120)
  .regex(/^[A-Za-z0-9_.@|+-]+$/, 'opaque ids only');

const ciphertext = z.string().base64().max(8_192);
const maskedValue = z.string().max(200).nullable();

/**
 * An audit event as emitters build it and as it travels to the audit worker. Only opaque ids and codes: no free
 * text, no PHI, no secret, because Redis is not encrypted at rest.
 */
export const auditEventSchema = z
  .object({
    eventId: opaqueId,
    companyId: opaqueId,
    officeId: opaqueId.optional(),
    action: z.enum(AUDIT_ACTIONS),
    outcome: z.enum(AUDIT_OUTCOMES),
    severity: z.enum(AUDIT_SEVERITIES).default('info'),
    actor: z
      .object({
        type: z.enum(['user', 'service', 'system', 'anonymous']),
        id: opaqueId,
        roles: z.array(z.enum(ROLES)).max(ROLES.length).optional(),
      })
      .strict(),
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
    /**
     * What can identify a person (source ip, user agent) or is free text (an
     * emergency access reason) travels only as ciphertext under the company's data key.
     */
    sealed: z
      .object({
        sourceIp: ciphertext.optional(),
        userAgent: ciphertext.optional(),
        accessReason: ciphertext.optional(),
      })
      .strict()
      .optional(),
    /** Before/after of a change, with secrets already masked. */
    changes: z
      .array(
        z
          .object({
            field: z
              .string()
              .regex(/^[A-Za-z0-9_.]+$/)
              .max(100),
            before: maskedValue,
            after: maskedValue,
          })
          .strict(),
      )
      .max(50)
      .optional(),
    occurredAt: z.string().datetime(),
  })
  .strict();
export type AuditEvent = z.infer<typeof auditEventSchema>;
/** What emitters pass: defaults (severity) may be left out. */
export type AuditEventInput = z.input<typeof auditEventSchema>;
