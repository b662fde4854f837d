import { Schema, type Connection, type Model } from 'mongoose';
import { DISPUTE_STATUSES, type DisputeOutcome, type DisputeStatus } from '../domain/dispute-transitions';
import type { Attention, GatewayAccountRef } from '../domain/gateway-account';
import { PAYMENT_STATUSES, type PaymentStatus } from '../domain/payment-status';
import { SUBSCRIPTION_ATTEMPT_REASONS, type SubscriptionAttempt } from '../domain/payment-audit';

export interface PaymentFailure {
  /** Our reason code, e.g. card_declined, payment_config_missing. */
  code: string;
  declineCode?: string;
  message: string;
}

/** Stripe's opaque ids and codes only: no evidence, no cardholder details. */
export interface PaymentDispute {
  stripeDisputeId: string;
  status: DisputeStatus;
  /** Disputed amount in minor units, and its currency. */
  amount: number;
  currency: string;
  /** Stripe's reason code (fraudulent, product_not_received, …). */
  reason: string;
  /** When Stripe opened the dispute. */
  openedAt: Date;
  /** When Stripe sent the event that closed it. */
  closedAt?: Date;
  outcome?: DisputeOutcome;
  /** Audit keys of the events that opened and last changed it: a retry after a crash recognises its own write. */
  openedBy: string;
  changedBy: string;
  /** How many times the dispute was written (absent: once, before revisions were counted); see DisputeRevision. */
  revision?: number;
}

/** A request's sealed context: base64 ciphertexts (the audit event's `sealed` fields of a request). */
export interface SealedRequestContext {
  sourceIp?: string;
  userAgent?: string;
}

export interface PaymentRecord {
  _id: string;
  companyId: string;
  officeId?: string;
  /** Unique per company: a retried request finds the payment it already made. */
  idempotencyKey: string;
  /** SHA-256 of the canonical request, to tell a retry from a conflicting reuse of the key. */
  requestHash: string;
  amount: number;
  currency: string;
  customer: string;
  paymentMethod: string;
  serviceCategory?: string;
  status: PaymentStatus;
  stripePaymentIntentId?: string;
  /** The gateway account of the first gateway call; retries, refunds and reconciliation use it or none. */
  gatewayAccount?: GatewayAccountRef;
  failure?: PaymentFailure;
  /** Why it is `needs_attention`. */
  attention?: Attention;
  /** When the reconciliation sweep last asked the gateway about it. */
  reconciledAt?: Date;
  /** For requires_action: what the upstream app needs to let the payer finish. clientSecret is encrypted. */
  action?: { clientSecret: unknown; nextActionType: string };
  /**
   * A subscription period's charge (off-session: the payer is not there): which subscription and period, and the
   * attempt it is (its number, why it was made, the subscription's time then), from which the charge worker sends
   * `subscription.attempt_started` first in its outcome's batch. Payments made before attempts were recorded here have
   * no `attempt`: the renewal run that recorded theirs sent the event.
   */
  subscription?: { subscriptionId: string; periodId: string; attempt?: SubscriptionAttempt };
  /** The chargeback (or inquiry) on this payment, from Stripe's `charge.dispute.*` events. */
  dispute?: PaymentDispute;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
  /**
   * Where the api request came from (ip, user agent), sealed as its audit event carries it: base64 ciphertext under
   * the company's data key (api/audit-context.ts), never decrypted here. The charge worker's `payment.requested` event
   * carries it, so the event says what the api would have sent. Absent on payments no api request made (renewals).
   */
  sealedContext?: SealedRequestContext;
  attempts: number;
  lastError?: string;
  completedAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

const disputeSchema = new Schema<PaymentDispute>(
  {
    stripeDisputeId: { type: String, required: true },
    status: { type: String, required: true, enum: DISPUTE_STATUSES },
    amount: { type: Number, required: true, min: 0 },
    currency: { type: String, required: true },
    reason: { type: String, required: true },
    openedAt: { type: Date, required: true },
    closedAt: { type: Date },
    outcome: { type: String, enum: ['won', 'lost'] },
    openedBy: { type: String, required: true },
    changedBy: { type: String, required: true },
    revision: { type: Number },
  },
  { _id: false },
);

const gatewayAccountSchema = new Schema<GatewayAccountRef>(
  {
    configurationId: { type: String, required: true },
    accountId: { type: String },
    livemode: { type: Boolean, required: true },
  },
  { _id: false },
);

export const attentionSchema = new Schema<Attention>(
  {
    code: { type: String, required: true },
    message: { type: String, required: true },
    since: { type: Date, required: true },
  },
  { _id: false },
);

/** Who asked for a money movement (a payment or a refund): a user or an upstream service. */
export const requestedBySchema = new Schema(
  { type: { type: String, required: true, enum: ['user', 'service'] }, id: { type: String, required: true } },
  { _id: false },
);

const paymentSchema = new Schema<PaymentRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    idempotencyKey: { type: String, required: true },
    requestHash: { type: String, required: true },
    amount: { type: Number, required: true, min: 1 },
    currency: { type: String, required: true },
    customer: { type: String, required: true },
    paymentMethod: { type: String, required: true },
    serviceCategory: { type: String },
    status: { type: String, required: true, enum: PAYMENT_STATUSES },
    stripePaymentIntentId: { type: String },
    gatewayAccount: { type: gatewayAccountSchema },
    failure: {
      type: new Schema<PaymentFailure>(
        { code: { type: String, required: true }, declineCode: String, message: { type: String, required: true } },
        { _id: false },
      ),
    },
    action: {
      type: new Schema(
        {
          clientSecret: { type: Schema.Types.Mixed, required: true },
          nextActionType: { type: String, required: true },
        },
        { _id: false },
      ),
    },
    attention: { type: attentionSchema },
    reconciledAt: { type: Date },
    subscription: {
      type: new Schema(
        {
          subscriptionId: { type: String, required: true },
          periodId: { type: String, required: true },
          attempt: {
            type: new Schema(
              {
                number: { type: Number, required: true },
                reason: { type: String, enum: SUBSCRIPTION_ATTEMPT_REASONS, required: true },
                at: { type: Date, required: true },
              },
              { _id: false },
            ),
          },
        },
        { _id: false },
      ),
    },
    dispute: { type: disputeSchema },
    requestedBy: { type: requestedBySchema, required: true },
    requestId: { type: String, required: true },
    sealedContext: {
      type: new Schema<SealedRequestContext>({ sourceIp: String, userAgent: String }, { _id: false }),
    },
    attempts: { type: Number, required: true, default: 0 },
    lastError: { type: String },
    completedAt: { type: Date },
  },
  { timestamps: true, versionKey: false, collection: 'payments' },
);
paymentSchema.index({ companyId: 1, idempotencyKey: 1 }, { unique: true, name: 'company_idempotency_key' });
// Dispute events name the PaymentIntent, not our payment.
paymentSchema.index({ companyId: 1, stripePaymentIntentId: 1 }, { name: 'company_payment_intent' });
// The outbox sweep looks for stale, unfinished payments.
paymentSchema.index({ status: 1, updatedAt: 1 }, { name: 'status_updated' });

export type PaymentModel = Model<PaymentRecord>;

export function createPaymentModel(connection: Connection): PaymentModel {
  return connection.model<PaymentRecord>('Payment', paymentSchema);
}
