import type { AuditEventInput } from './audit-event';
import { transitionEventId, type AuditAction, type AuditOutcome } from './audit-actions';
import type { PaymentStatus } from './payment-status';

/** What an audit event about a payment is built from: the stored record, nothing else. */
export interface AuditablePayment {
  _id: string;
  companyId: string;
  officeId?: string;
  status: PaymentStatus;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
  /** The requesting call's sealed context (ip, user agent as ciphertext), when an api request made the payment. */
  sealedContext?: { sourceIp?: string; userAgent?: string };
  failure?: { code: string };
  attention?: { code: string; since: Date };
  createdAt: Date;
  completedAt?: Date;
}

const OUTCOME_EVENTS: Partial<Record<PaymentStatus, { action: AuditAction; outcome: AuditOutcome }>> = {
  succeeded: { action: 'payment.succeeded', outcome: 'success' },
  failed: { action: 'payment.failed', outcome: 'failure' },
  requires_action: { action: 'payment.requires_action', outcome: 'success' },
  needs_attention: { action: 'payment.needs_attention', outcome: 'failure' },
};

/**
 * The request, as the charge worker sends it first in the outcome's batch: everything from the stored payment, the
 * api's sealed context included, so the event is what the api would have sent itself.
 */
export function paymentRequestedEvent(payment: AuditablePayment): AuditEventInput {
  return {
    eventId: transitionEventId('payment.requested', payment._id),
    companyId: payment.companyId,
    ...(payment.officeId ? { officeId: payment.officeId } : {}),
    action: 'payment.requested',
    outcome: 'success',
    actor: payment.requestedBy,
    resource: { type: 'payment', id: payment._id },
    requestId: payment.requestId,
    ...(payment.sealedContext ? { sealed: payment.sealedContext } : {}),
    occurredAt: payment.createdAt.toISOString(),
  };
}

/** The event for a settled payment, or undefined while it is still in flight. */
export function paymentOutcomeEvent(
  payment: AuditablePayment,
  actor: AuditEventInput['actor'],
  jobId?: string,
): AuditEventInput | undefined {
  const event = OUTCOME_EVENTS[payment.status];
  if (!event) return undefined;
  const attention = payment.status === 'needs_attention' ? payment.attention : undefined;
  const reason = attention?.code ?? payment.failure?.code;
  return {
    // A payment may need attention more than once (each time it is settled again and a retry is stuck again).
    eventId: transitionEventId(event.action, attention ? `${payment._id}-${attention.since.getTime()}` : payment._id),
    companyId: payment.companyId,
    ...(payment.officeId ? { officeId: payment.officeId } : {}),
    action: event.action,
    outcome: event.outcome,
    actor,
    resource: { type: 'payment', id: payment._id },
    ...(reason ? { reason } : {}),
    requestId: payment.requestId,
    ...(jobId ? { jobId } : {}),
    occurredAt: (attention?.since ?? payment.completedAt ?? new Date()).toISOString(),
  };
}
