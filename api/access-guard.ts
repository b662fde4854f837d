import type { Queue } from 'bullmq';
import type { FastifyRequest } from 'fastify';
import { ulid } from '../platform/ids';
import { ZodError } from 'zod';
import {
  decideAccess,
  decideListAccess,
  type AccessContext,
  type AccessDecision,
  type ListAccessDecision,
  type Permission,
  type Principal,
} from '../domain/access-policy';
import { PLATFORM_AUDIT_SCOPE, type AuditAction } from '../domain/audit-actions';
import type { FieldEncryption } from '../models/encryption';
import { withDeadline } from '../platform/deadline';
import { type AuditEventInput } from '../domain/audit-event';
import { enqueueAuditEvent, type AuditJob } from '../queues/audit.queue';
import { sealRequestContext, sealValue } from './audit-context';
import { ApiError } from './errors';
import { scopeIdSchema } from './validation';
import type { AuditBudget } from './audit-budget';

export interface AccessGuardDeps {
  auditQueue: Queue<AuditJob>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  emergencyWindowSeconds: number;
  /** Bounds the auth.failed events unauthenticated traffic can write (see audit-budget.ts). */
  withinAuditBudget: AuditBudget;
}

/** What a route says about its caller's action; the guard adds who, from where and when. */
export type CallerEvent = Pick<AuditEventInput, 'companyId' | 'action' | 'resource'> &
  Partial<Pick<AuditEventInput, 'changes' | 'permission' | 'officeId' | 'severity' | 'reason' | 'sealed' | 'outcome'>>;

export interface AccessTarget {
  companyId: string;
  officeId?: string;
  resource?: { type: string; id: string };
}

const AUDIT_ENQUEUE_DEADLINE_MS = 2_000;

/** The route pattern, never the concrete URL: ids in paths are fine, but query strings could carry anything. */
export function routeOf(request: FastifyRequest): string {
  return `${request.method} ${request.routeOptions.url ?? '/unknown'}`;
}

function companyInPath(request: FastifyRequest): string | undefined {
  const companyId = scopeIdSchema.safeParse((request.params as { companyId?: unknown } | undefined)?.companyId);
  return companyId.success ? companyId.data : undefined;
}

export interface AccessGuard {
  /** Allows or throws 403 (and audits the denial); emergency access is audited at high severity. */
  authorize(request: FastifyRequest, permission: Permission, target: AccessTarget): Promise<void>;
  /** For list routes: which offices the caller may see (undefined: all of the company's). */
  authorizeList(
    request: FastifyRequest,
    permission: Permission,
    target: AccessTarget,
  ): Promise<{ officeIds?: string[] }>;
  /**
   * Records a read of the authenticated caller before its data goes out: 503 `audit_unavailable` when the event
   * cannot be queued, so nothing is shown unaudited.
   */
  record(request: FastifyRequest, event: CallerEvent): Promise<void>;
  /**
   * The audit event of a change the authenticated caller makes (with the request's sealed context), under `eventId`,
   * without sending it: stored with the change (models/pending-audit.ts), then sent with `send`.
   */
  prepare(request: FastifyRequest, event: CallerEvent, eventId: string): Promise<AuditEventInput>;
  /** Queues prepared events within the enqueue deadline; false (logged) when Redis does not take them. */
  send(request: FastifyRequest, events: AuditEventInput[]): Promise<boolean>;
  /** Audits a failed authentication before the 401 goes out. */
  auditAuthenticationFailure(request: FastifyRequest, reason: string): Promise<void>;
}

export function createAccessGuard(deps: AccessGuardDeps): AccessGuard {
  async function withContext(
    request: FastifyRequest,
    event: Omit<AuditEventInput, 'eventId' | 'occurredAt' | 'requestId'>,
    eventId: string,
  ): Promise<AuditEventInput> {
    const context = await sealRequestContext(request, event.companyId, deps.encryption);
    return {
      ...event,
      eventId,
      requestId: request.id,
      occurredAt: new Date().toISOString(),
      sealed: { ...context, ...event.sealed },
    };
  }

  async function send(request: FastifyRequest, events: AuditEventInput[]): Promise<boolean> {
    try {
      await withDeadline(
        Promise.all(events.map((event) => enqueueAuditEvent(deps.auditQueue, event))),
        AUDIT_ENQUEUE_DEADLINE_MS,
        'audit enqueue',
      );
      return true;
    } catch (error) {
      // An event that does not fit the audit schema is a bug: fail loudly instead of losing it quietly.
      if (error instanceof ZodError) throw error;
      request.log.error(
        { err: error, actions: events.map((event) => event.action), reasons: events.map((event) => event.reason) },
        'could not enqueue audit event',
      );
      return false;
    }
  }

  /**
   * An event of its own (random id: it is sent now or never stored). False when it cannot be queued: a 401/403 still
   * goes out, the log line being the record of last resort; a read or break-glass access is refused instead.
   */
  async function audit(
    request: FastifyRequest,
    event: Omit<AuditEventInput, 'eventId' | 'occurredAt' | 'requestId'>,
  ): Promise<boolean> {
    try {
      return await send(request, [await withContext(request, event, `evt_${ulid()}`)]);
    } catch (error) {
      if (error instanceof ZodError) throw error;
      request.log.error({ err: error, action: event.action, reason: event.reason }, 'could not seal audit event');
      return false;
    }
  }

  function securityEvent(request: FastifyRequest, action: AuditAction, extra: Partial<AuditEventInput>) {
    const principal = request.principal;
    return {
      companyId: extra.companyId ?? PLATFORM_AUDIT_SCOPE,
      action,
      outcome: 'denied' as const,
      actor: principal
        ? { type: principal.subjectType, id: principal.subject, roles: principal.roles }
        : { type: 'anonymous' as const, id: 'anonymous' },
      resource: { type: 'route', id: 'unknown' },
      route: routeOf(request),
      ...extra,
    };
  }

  async function enforce<D extends AccessDecision | ListAccessDecision>(
    request: FastifyRequest,
    permission: Permission,
    target: AccessTarget,
    decide: (principal: Principal, context: AccessContext) => D,
  ): Promise<Extract<D, { allowed: true }>> {
    const principal = request.principal;
    if (!principal) throw new ApiError(401, 'authorization_missing', 'a bearer token is required');
    const accessReason = request.headers['x-access-reason'];
    const decision = decide(principal, {
      accessReason: typeof accessReason === 'string' ? accessReason : undefined,
      now: new Date(),
      emergencyWindowSeconds: deps.emergencyWindowSeconds,
    });
    const resource = target.resource ?? { type: 'company', id: target.companyId };
    if (!decision.allowed) {
      // A denial for another company is recorded in the caller's own trail, not the target's.
      const trail = decision.reason === 'company_out_of_scope' ? principal.companyId : target.companyId;
      await audit(
        request,
        securityEvent(request, 'access.denied', {
          companyId: trail,
          ...(target.officeId ? { officeId: target.officeId } : {}),
          resource,
          permission,
          reason: decision.reason,
        }),
      );
      throw new ApiError(403, decision.reason, `not allowed: ${decision.reason.replace(/_/g, ' ')}`);
    }
    if (decision.emergency) {
      const sealedReason = await sealValue(deps.encryption, target.companyId, String(accessReason));
      const audited = await audit(
        request,
        securityEvent(request, 'access.emergency', {
          companyId: target.companyId,
          outcome: 'success',
          severity: 'high',
          resource,
          permission,
          sealed: { accessReason: sealedReason },
        }),
      );
      // Break-glass access that cannot be recorded is not granted.
      if (!audited) throw new ApiError(503, 'audit_unavailable', 'emergency access cannot be recorded right now');
    }
    return decision as Extract<D, { allowed: true }>;
  }

  function callerEvent(request: FastifyRequest, event: CallerEvent) {
    return { ...securityEvent(request, event.action, event), outcome: event.outcome ?? ('success' as const) };
  }

  return {
    async record(request, event) {
      if (!(await audit(request, callerEvent(request, event)))) {
        throw new ApiError(503, 'audit_unavailable', 'this read cannot be recorded in the audit trail right now');
      }
    },

    prepare(request, event, eventId) {
      return withContext(request, callerEvent(request, event), eventId);
    },

    send,

    async auditAuthenticationFailure(request, reason) {
      // A flood of bad tokens is refused as usual but audited only within the budget: each event costs encryption
      // and an append, and must not let anyone fill the trail (or the api's time).
      const budget = await deps.withinAuditBudget('auth-failed', PLATFORM_AUDIT_SCOPE, reason, request.ip);
      if (!budget.audit) {
        request.log.warn({ reason, failuresThisMinute: budget.counts }, 'authentication failed (over the audit bound)');
        return;
      }
      // Recorded in the platform trail: an unauthenticated caller's claimed company is not trusted
      // (and must not make us create data keys for made-up companies).
      const claimed = companyInPath(request);
      await audit(
        request,
        securityEvent(request, 'auth.failed', {
          reason,
          ...(claimed ? { resource: { type: 'company', id: claimed } } : {}),
        }),
      );
    },

    async authorize(request, permission, target) {
      await enforce(request, permission, target, (principal, context) =>
        decideAccess(principal, permission, target, context),
      );
    },

    async authorizeList(request, permission, target) {
      const decision = await enforce(request, permission, target, (principal, context) =>
        decideListAccess(principal, permission, target, context),
      );
      return { officeIds: decision.officeIds };
    },
  };
}
