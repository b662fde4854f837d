import type { AuditEventInput } from './audit-event';
import { transitionEventId, type AuditAction, type AuditOutcome } from './audit-actions';
import type { RefundStatus } from './refund-status';

/** What an audit event about a refund is built from: the stored record, nothing else (amounts and codes, no PHI). */
export interface AuditableRefund {
  _id: string;
  companyId: string;
  officeId?: string;
  paymentId: string;
  amount: number;
  currency: string;
  reason: string;
  status: RefundStatus;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
  failure?: { code: string };
  attention?: { code: string; since: Date };
  createdAt: Date;
  completedAt?: Date;
}

type Actor = AuditEventInput['actor'];

const OUTCOME_EVENTS: Partial<Record<RefundStatus, { action: AuditAction; outcome: AuditOutcome }>> = {
  succeeded: { action: 'refund.succeeded', outcome: 'success' },
  failed: { action: 'refund.failed', outcome: 'failure' },
  canceled: { action: 'refund.canceled', outcome: 'failure' },
  needs_attention: { action: 'refund.needs_attention', outcome: 'failure' },
};

const scope = (refund: AuditableRefund) => ({
  companyId: refund.companyId,
  ...(refund.officeId ? { officeId: refund.officeId } : {}),
  resource: { type: 'refund', id: refund._id },
  requestId: refund.requestId,
});

/** Emitted by the ingress (with the caller's sealed context) and again by the worker: one id, stored once. */
export function refundRequestedEvent(refund: AuditableRefund): AuditEventInput {
  return {
    eventId: transitionEventId('refund.requested', refund._id),
    ...scope(refund),
    action: 'refund.requested',
    outcome: 'success',
    actor: refund.requestedBy,
    reason: refund.reason,
    changes: [
      { field: 'paymentId', before: null, after: refund.paymentId },
      { field: 'amount', before: null, after: String(refund.amount) },
      { field: 'currency', before: null, after: refund.currency },
    ],
    occurredAt: refund.createdAt.toISOString(),
  };
}

/**
 * The event for a refund that reached a final status, or undefined while it is in
 * flight. Deterministic per (action, refund): the worker, a webhook and a retry
 * emit the same event. A success Stripe later reports failed gets both events.
 */
export function refundOutcomeEvent(refund: AuditableRefund, actor: Actor, jobId?: string): AuditEventInput | undefined {
  const event = OUTCOME_EVENTS[refund.status];
  if (!event) return undefined;
  const attention = refund.status === 'needs_attention' ? refund.attention : undefined;
  const reason = attention?.code ?? refund.failure?.code;
  return {
    eventId: transitionEventId(event.action, attention ? `${refund._id}-${attention.since.getTime()}` : refund._id),
    ...scope(refund),
    action: event.action,
    outcome: event.outcome,
    actor,
    ...(reason ? { reason } : {}),
    ...(jobId ? { jobId } : {}),
    occurredAt: (attention?.since ?? refund.completedAt ?? new Date()).toISOString(),
  };
}

/** Turns a gateway's code into an audit reason code (lowercase letters, digits and underscores). */
export function toReasonCode(code: string): string {
  const cleaned = code
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 64);
  return cleaned || 'refund_failed';
}
