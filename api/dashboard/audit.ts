import type { Queue } from 'bullmq';
import type { FastifyRequest } from 'fastify';
import { ulid } from '../../platform/ids';
import { ZodError } from 'zod';
import { PLATFORM_AUDIT_SCOPE, type AuditAction, type AuditOutcome } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import type { FieldEncryption } from '../../models/encryption';
import { withDeadline } from '../../platform/deadline';
import { enqueueAuditEvent, type AuditJob } from '../../queues/audit.queue';
import { routeOf } from '../access-guard';
import { sealRequestContext } from '../audit-context';

const AUDIT_ENQUEUE_DEADLINE_MS = 2_000;

export interface DashboardAuditEvent {
  action: Extract<AuditAction, `dashboard.${string}`>;
  outcome: AuditOutcome;
  actor: AuditEventInput['actor'];
  resource: AuditEventInput['resource'];
  reason?: string;
}

/** Appends dashboard events to the platform trail (the queues are every company's). False when Redis did not take it. */
export type DashboardAudit = (request: FastifyRequest, event: DashboardAuditEvent) => Promise<boolean>;

/** Bull Board job ids may hold characters audit ids do not (a scheduler's `repeat:…:…`): those become `-`. */
export function auditableId(value: string): string {
  return value.replace(/[^A-Za-z0-9_.@|+-]/g, '-').slice(0, 120) || 'unknown';
}

export function createDashboardAudit(deps: {
  auditQueue: Queue<AuditJob>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
}): DashboardAudit {
  return async (request, event) => {
    try {
      const sealed = await sealRequestContext(request, PLATFORM_AUDIT_SCOPE, deps.encryption);
      await withDeadline(
        enqueueAuditEvent(deps.auditQueue, {
          ...event,
          eventId: `evt_${ulid()}`,
          companyId: PLATFORM_AUDIT_SCOPE,
          route: routeOf(request),
          requestId: request.id,
          occurredAt: new Date().toISOString(),
          sealed,
        }),
        AUDIT_ENQUEUE_DEADLINE_MS,
        'audit enqueue',
      );
      return true;
    } catch (error) {
      // An event that does not fit the audit schema is a bug: fail loudly.
      if (error instanceof ZodError) throw error;
      request.log.error({ err: error, action: event.action, reason: event.reason }, 'could not enqueue audit event');
      return false;
    }
  };
}
