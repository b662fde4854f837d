import { Readable } from 'node:stream';
import type { KeyObject } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../../domain/audit-actions';
import type { Models } from '../../models';
import type { AuditEventRecord } from '../../models/audit-event.model';
import type { AuditTrail } from '../../models/audit-trail';
import { opaqueId } from '../../domain/audit-event';
import type { AccessGuard } from '../access-guard';
import { parse, scopeIdSchema } from '../validation';

export interface AuditRouteDeps {
  models: Pick<Models, 'AuditEvent'>;
  auditTrail: Pick<AuditTrail, 'verify'>;
  anchorPublicKey: KeyObject;
  guard: Pick<AccessGuard, 'authorize' | 'record'>;
}

export const auditParams = z.object({ companyId: scopeIdSchema }).strict();
export const auditQuery = z
  .object({
    from: z.string().datetime({ offset: true }).optional(),
    to: z.string().datetime({ offset: true }).optional(),
    actorId: opaqueId.optional(),
    action: z.enum(AUDIT_ACTIONS).optional(),
    resourceType: z
      .string()
      .regex(/^[a-z_]{1,40}$/)
      .optional(),
    resourceId: opaqueId.optional(),
    outcome: z.enum(AUDIT_OUTCOMES).optional(),
    limit: z.coerce.number().int().min(1).max(500).default(100),
    /** The sequence number of the last event of the previous page. */
    after: z.coerce.number().int().min(0).optional(),
    format: z.enum(['json', 'ndjson']).default('json'),
  })
  .strict();

/** What an auditor sees: everything recorded, sealed fields decrypted, plus the chain links. */
function presentEvent(event: AuditEventRecord) {
  const text = (value: unknown) => (value === undefined || value === null ? undefined : String(value));
  return {
    id: event._id,
    sequence: event.sequence,
    occurredAt: event.occurredAt.toISOString(),
    recordedAt: event.recordedAt.toISOString(),
    action: event.action,
    outcome: event.outcome,
    severity: event.severity,
    actor: { ...event.actor, accessReason: text(event.actor.accessReason) },
    resource: event.resource,
    officeId: event.officeId,
    reason: event.reason,
    route: event.route,
    permission: event.permission,
    request: event.request
      ? {
          requestId: event.request.requestId,
          sourceIp: text(event.request.sourceIp),
          userAgent: text(event.request.userAgent),
        }
      : undefined,
    changes: event.changes,
    jobId: event.jobId,
    prevHash: event.prevHash,
    hash: event.hash,
  };
}

export function registerAuditRoutes(app: FastifyInstance, deps: AuditRouteDeps): void {
  const { AuditEvent } = deps.models;

  app.get('/v1/companies/:companyId/audit-events', async (request, reply) => {
    const { companyId } = parse(auditParams, request.params);
    const q = parse(auditQuery, request.query);
    const wantsNdjson = q.format === 'ndjson' || request.headers.accept === 'application/x-ndjson';
    await deps.guard.authorize(request, 'audit:read', { companyId, resource: { type: 'audit_trail', id: companyId } });

    const filter: Record<string, unknown> = { companyId };
    if (q.from || q.to)
      filter.occurredAt = { ...(q.from ? { $gte: new Date(q.from) } : {}), ...(q.to ? { $lt: new Date(q.to) } : {}) };
    if (q.actorId) filter['actor.id'] = q.actorId;
    if (q.action) filter.action = q.action;
    if (q.resourceType) filter['resource.type'] = q.resourceType;
    if (q.resourceId) filter['resource.id'] = q.resourceId;
    if (q.outcome) filter.outcome = q.outcome;
    if (q.after !== undefined) filter.sequence = { $gt: q.after };

    // Reading the audit trail is itself audited, before any event is read: a 503 when it cannot be.
    await deps.guard.record(request, {
      companyId,
      action: wantsNdjson ? 'audit.exported' : 'audit.read',
      resource: { type: 'audit_trail', id: companyId },
      permission: 'audit:read',
    });

    if (wantsNdjson) {
      const cursor = AuditEvent.find(filter).sort({ sequence: 1 }).lean().cursor();
      async function* lines() {
        for await (const event of cursor) yield `${JSON.stringify(presentEvent(event as AuditEventRecord))}\n`;
      }
      void reply.type('application/x-ndjson');
      return reply.send(Readable.from(lines()));
    }
    const page = await AuditEvent.find(filter)
      .sort({ sequence: 1 })
      .limit(q.limit + 1)
      .lean();
    const items = page.slice(0, q.limit).map((event) => presentEvent(event as AuditEventRecord));
    return { items, nextCursor: page.length > q.limit ? (items.at(-1)?.sequence ?? null) : null };
  });

  app.get('/v1/companies/:companyId/audit-events/verify', async (request) => {
    const { companyId } = parse(auditParams, request.params);
    await deps.guard.authorize(request, 'audit:read', { companyId, resource: { type: 'audit_trail', id: companyId } });
    const report = await deps.auditTrail.verify(companyId, deps.anchorPublicKey);
    // The report goes out only once its audit event is queued (503 otherwise).
    await deps.guard.record(request, {
      companyId,
      action: 'audit.verified',
      resource: { type: 'audit_trail', id: companyId },
      permission: 'audit:read',
      changes: [
        { field: 'result', before: null, after: report.ok ? 'intact' : `broken_at_${report.broken?.sequence}` },
      ],
    });
    return report;
  });
}
