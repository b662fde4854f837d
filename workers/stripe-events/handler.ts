import type { MoneyReturned } from '../../application/invoices/issue-invoice';
import type { RecordOutcomeDeps } from '../../application/payments/record-outcome';
import type { FollowRefundDeps } from '../../application/refunds/move-refund';
import type { Job } from 'bullmq';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import type { PaymentRecord } from '../../models/payment.model';
import type { WebhookEventRecord } from '../../models/webhook-event.model';
import type { Logger } from '../../platform/logger';
import type { AuditEventInput } from '../../domain/audit-event';
import type { PaymentGateway } from '../../domain/payment-gateway';
import type { StripeEventJob } from '../../queues/stripe-events.queue';

/** What the stripe-events worker and its handlers work with. */
export interface StripeEventDeps {
  models: Pick<
    Models,
    | 'Company'
    | 'Office'
    | 'Payment'
    | 'DisputeRevision'
    | 'WebhookEvent'
    | 'SavedPaymentMethod'
    | 'SetupIntent'
    | 'Refund'
    | 'RefundLedger'
  >;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  /** Reads a saved card's masked details (setup_intent.succeeded). */
  gateway: Pick<PaymentGateway, 'retrievePaymentMethod'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** Told of every payment outcome recorded (a subscription's period payment renews its subscription). */
  onOutcome?: RecordOutcomeDeps['onOutcome'];
  /** Told of a succeeded refund (its credit note). */
  onRefundSucceeded?: FollowRefundDeps['onRefundSucceeded'];
  /** Told of a failed refund (a credit note of one that had succeeded is voided). */
  onRefundFailed?: FollowRefundDeps['onRefundFailed'];
  /** Money went back to the payer without a refund of ours (a Stripe dashboard refund, a lost dispute): its credit note. */
  onMoneyReturned?: (returned: MoneyReturned) => Promise<unknown>;
  /** A payer saved a payment method: their subscriptions waiting for one resume collection. */
  onPaymentMethodSaved?: (method: {
    _id: string;
    companyId: string;
    customerRef: string;
    officeId?: string;
  }) => Promise<unknown>;
  logger: Logger;
}

/**
 * What one event did. `resource` is the record it concerned (audited as the
 * event's resource); `officeId` scopes the audit event to that record's office.
 */
export interface EventOutcome {
  status: 'applied' | 'ignored';
  reason: string;
  resource?: { type: string; id: string };
  officeId?: string;
  /** Set when the record belongs to a payment (kept on the inbox row for ops). */
  paymentId?: string;
}

/**
 * Applies one event type to our records. Must be idempotent: it may run again
 * after a crash (or a replay), so it moves records with conditional updates and
 * derives any audit event id from `auditKey`.
 */
export type StripeEventHandler = (context: {
  row: WebhookEventRecord;
  /** `data.object` of the event as Stripe sent it. */
  object: Record<string, unknown>;
  /** Unique per event and replay: the base of audit event ids. */
  auditKey: string;
  job: Job<StripeEventJob>;
  deps: StripeEventDeps;
}) => Promise<EventOutcome>;

export const STRIPE_EVENTS_ACTOR = { type: 'system' as const, id: 'stripe-events-worker' };
// How often a handler decides again after losing a race for a record (a domain rule the refund use cases share).

/** The outcome for an event about a payment (or about none, when it was not found). */
export const paymentOutcome = (
  status: EventOutcome['status'],
  reason: string,
  payment?: Pick<PaymentRecord, '_id' | 'officeId'>,
): EventOutcome => ({
  status,
  reason,
  ...(payment
    ? {
        resource: { type: 'payment', id: payment._id },
        paymentId: payment._id,
        ...(payment.officeId ? { officeId: payment.officeId } : {}),
      }
    : {}),
});
