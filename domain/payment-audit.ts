import type { AuditEventInput } from './audit-event';
import { transitionEventId, type AuditAction, type AuditOutcome } from './audit-actions';
import type { PaymentStatus } from './payment-status';

/** Who a renewal's events name: the renewals worker, whichever job (renew or charge) sends them. */
export const RENEWALS_ACTOR: AuditEventInput['actor'] = { type: 'system', id: 'renewals-worker' };

/** Why a subscription's attempt was made: its period's first, a dunning retry, a new card's, or a plan change billed. */
export const SUBSCRIPTION_ATTEMPT_REASONS = [
  'first_attempt',
  'retry',
  'new_payment_method',
  'plan_change_invoiced',
] as const;

/** The attempt a subscription's payment is: its number for the period, why it was made, the subscription's time. */
export interface SubscriptionAttempt {
  number: number;
  reason: (typeof SUBSCRIPTION_ATTEMPT_REASONS)[number];
  at: Date;
}

/** What an audit event about a payment is built from: the stored record, nothing else. */
export interface AuditablePayment {
  _id: string;
  companyId: string;
  officeId?: string;
  subscription?: { subscriptionId: string; periodId: string; attempt?: SubscriptionAttempt };
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

/**
 * A subscription's attempt, as the charge worker sends it first in the outcome's batch (before the request) from the
 * stored payment: the event the renewal run that recorded the attempt sent before, with the same id. Undefined for a
 * payment that is no subscription's attempt, or was made before payments recorded their attempt (its run sent it).
 */
export function attemptStartedEvent(payment: AuditablePayment): AuditEventInput | undefined {
  const attempt = payment.subscription?.attempt;
  if (!attempt) return undefined;
  const { subscriptionId, periodId } = payment.subscription!;
  return {
    eventId: transitionEventId('subscription.attempt_started', `${subscriptionId}-${periodId}-${attempt.number}`),
    companyId: payment.companyId,
    ...(payment.officeId ? { officeId: payment.officeId } : {}),
    action: 'subscription.attempt_started',
    outcome: 'success',
    actor: RENEWALS_ACTOR,
    resource: { type: 'subscription', id: subscriptionId },
    reason: attempt.reason,
    changes: [{ field: 'paymentId', before: null, after: payment._id }],
    occurredAt: attempt.at.toISOString(),
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
