import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';
import type { BillingInterval } from '../domain/billing-period';
import { SUBSCRIPTION_STATUSES, type SubscriptionStatus } from '../domain/subscription-state';
import { intervalSchema } from './plan.model';
import { requestedBySchema } from './payment.model';
import { serializedWrites } from './serialized-writes';

/** Why collection stopped until someone acts: a hard decline (a new payment method), or 3-D Secure (the payer). */
export const COLLECTION_WAITS = ['payment_method', 'payer_action'] as const;
export type CollectionWait = (typeof COLLECTION_WAITS)[number];

export interface SubscriptionRecord {
  /** `sub_` and a ULID. */
  _id: string;
  companyId: string;
  officeId?: string;
  planId: string;
  /** The payer, by the upstream app's opaque reference only. */
  customerRef: string;
  /** Our saved payment method (`spm_…`), of this payer. */
  paymentMethodId: string;
  status: SubscriptionStatus;
  /** Copied from the plan when it was subscribed to (or changed to). */
  amount: number;
  currency: string;
  interval: BillingInterval;
  /** Periods are cycle boundaries: the anchor plus whole intervals in the company's time zone. */
  cycle: { anchor: Date; dayOfMonth?: number; timeZone: string };
  currentPeriod: { index: number; start: Date; end: Date };
  trialEnd?: Date;
  /**
   * When the renewal sweep next looks at it: the next period's start, a dunning retry, a payment in flight, or the
   * expiry of an incomplete first payment. Absent while nothing is due (waiting on the payer, canceled, paused).
   */
  nextBillingAt?: Date;
  /** Collection stopped until a new payment method (hard decline) or the payer (3-D Secure). */
  waitingFor?: CollectionWait;
  cancelAtPeriodEnd: boolean;
  /**
   * Set when a new card arrives after dunning ended `unpaid`: once the owed period is paid, a new cycle starts then
   * (if that period has ended), so the time that passed while unpaid is never billed.
   */
  restartOnCollection?: boolean;
  canceledAt?: Date;
  /** A signed amount (minor units) the next period's bill carries: a plan change's proration. */
  pendingProration?: number;
  /** The periods whose bill took (part of) the pending proration: each takes it once. */
  prorationsApplied?: string[];
  /**
   * A plan change billed at once (`always_invoice`) whose charge is not made yet: written with the change, so a crash
   * before the charge loses nothing (the next renewal run makes it; the record's id makes it once), removed once made.
   */
  adjustmentDue?: { id: string; amount: number; at: Date };
  /**
   * The plan-change adjustments that may still be open (their payment's outcome not yet settled): an id is added by
   * the change that writes it in `adjustmentDue` (in that same write), and taken off by the renewal run that finds its
   * record paid or carried. A renewal reads the open records only when this lists one (or is not there: a
   * subscription stored before it); without one it makes no read for them.
   */
  openAdjustments?: string[];
  /**
   * The end of the last period recorded paid, written by the status move that follows that record (a paid period
   * never changes again): an active subscription whose current period ends here is renewed at that end without a
   * read of the period. Absent on subscriptions stored before it, which read the period as before.
   */
  paidThrough?: Date;
  testClockId?: string;
  idempotencyKey: string;
  requestHash: string;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
  createdAt: Date;
  updatedAt: Date;
}

const subscriptionSchema = new Schema<SubscriptionRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    planId: { type: String, required: true },
    customerRef: { type: String, required: true },
    paymentMethodId: { type: String, required: true },
    status: { type: String, required: true, enum: SUBSCRIPTION_STATUSES },
    amount: { type: Number, required: true, min: 1 },
    currency: { type: String, required: true },
    interval: { type: intervalSchema, required: true },
    cycle: {
      type: new Schema(
        { anchor: { type: Date, required: true }, dayOfMonth: Number, timeZone: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
    currentPeriod: {
      type: new Schema(
        {
          index: { type: Number, required: true },
          start: { type: Date, required: true },
          end: { type: Date, required: true },
        },
        { _id: false },
      ),
      required: true,
    },
    trialEnd: { type: Date },
    nextBillingAt: { type: Date },
    waitingFor: { type: String, enum: COLLECTION_WAITS },
    cancelAtPeriodEnd: { type: Boolean, required: true, default: false },
    restartOnCollection: { type: Boolean },
    canceledAt: { type: Date },
    pendingProration: { type: Number },
    prorationsApplied: { type: [String], default: undefined },
    adjustmentDue: {
      type: new Schema(
        {
          id: { type: String, required: true },
          amount: { type: Number, required: true },
          at: { type: Date, required: true },
        },
        { _id: false },
      ),
    },
    openAdjustments: { type: [String], default: undefined },
    paidThrough: { type: Date },
    testClockId: { type: String },
    idempotencyKey: { type: String, required: true },
    requestHash: { type: String, required: true },
    requestedBy: { type: requestedBySchema, required: true },
    requestId: { type: String, required: true },
  },
  { timestamps: true, versionKey: false, collection: 'subscriptions' },
);
subscriptionSchema.index({ companyId: 1, idempotencyKey: 1 }, { unique: true, name: 'company_idempotency_key' });
// The renewal sweep: which companies have something due, then each company's due subscriptions in order.
subscriptionSchema.index({ nextBillingAt: 1 }, { name: 'next_billing' });
subscriptionSchema.index({ companyId: 1, nextBillingAt: 1, _id: 1 }, { name: 'company_next_billing' });
subscriptionSchema.index({ testClockId: 1, nextBillingAt: 1 }, { name: 'clock_next_billing', sparse: true });
subscriptionSchema.index({ companyId: 1, customerRef: 1 }, { name: 'company_customer_ref' });
// A cancel, a plan change and a renewal may write one subscription at the same moment (models/serialized-writes.ts).
serializedWrites(subscriptionSchema, 'subscription');

export type SubscriptionModel = Model<SubscriptionRecord>;

export function createSubscriptionModel(connection: Connection): SubscriptionModel {
  return connection.model<SubscriptionRecord>('Subscription', subscriptionSchema);
}

export const PERIOD_STATUSES = ['open', 'paid', 'uncollectible'] as const;
export type PeriodStatus = (typeof PERIOD_STATUSES)[number];

/**
 * One billing period of a subscription: inserted under its deterministic id before any gateway call, so a period is
 * billed once whatever races or crashes. Its attempts are payments (the one-off charge path), made one at a time:
 * a new attempt only once the previous one is settled.
 */
export interface SubscriptionPeriodRecord {
  /** `per_` + a hash of the subscription and the period's start. */
  _id: string;
  /** `adjustment`: a plan change billed at once (always_invoice), not a period of the cycle. */
  kind?: 'adjustment';
  companyId: string;
  officeId?: string;
  subscriptionId: string;
  index: number;
  start: Date;
  end: Date;
  /** What this period bills (the plan's amount and any proration), fixed when the period is opened. */
  amount: number;
  /** The part of `amount` that is a plan change's proration (signed). */
  proration?: number;
  currency: string;
  status: PeriodStatus;
  /** Payments made for it so far; `paymentId` is the latest. */
  attempts: number;
  paymentId?: string;
  firstFailureAt?: Date;
  /** The latest failed attempt's payment and code (recorded once per payment), and when it was recorded. */
  lastFailure?: { paymentId: string; code: string; declineCode?: string; at?: Date };
  /** How many of `attempts` failed on the merchant's side (they are not dunning attempts). */
  merchantFailures?: number;
  /** How many of `attempts` a new payment method made at once (they use none of the policy's retries). */
  cardAttempts?: number;
  /**
   * The card (brand and last four only) of the latest attempt's payment, recorded with it: its invoice prints the card
   * that certainly paid without reading the payment method again.
   */
  attemptCard?: { paymentId: string; brand: string; last4: string };
  paidAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

export function periodId(subscriptionId: string, start: Date): string {
  const digest = createHash('sha256').update(`${subscriptionId}|${start.toISOString()}`).digest('hex');
  return `per_${digest.slice(0, 32)}`;
}

const periodSchema = new Schema<SubscriptionPeriodRecord>(
  {
    _id: { type: String, required: true },
    kind: { type: String, enum: ['adjustment'] },
    companyId: { type: String, required: true },
    officeId: { type: String },
    subscriptionId: { type: String, required: true },
    index: { type: Number, required: true },
    start: { type: Date, required: true },
    end: { type: Date, required: true },
    amount: { type: Number, required: true, min: 0 },
    proration: { type: Number },
    currency: { type: String, required: true },
    status: { type: String, required: true, enum: PERIOD_STATUSES },
    attempts: { type: Number, required: true, default: 0 },
    paymentId: { type: String },
    firstFailureAt: { type: Date },
    lastFailure: {
      type: new Schema(
        {
          paymentId: { type: String, required: true },
          code: { type: String, required: true },
          declineCode: String,
          at: Date,
        },
        { _id: false },
      ),
    },
    merchantFailures: { type: Number, min: 0 },
    cardAttempts: { type: Number, min: 0 },
    attemptCard: {
      type: new Schema(
        {
          paymentId: { type: String, required: true },
          brand: { type: String, required: true },
          last4: { type: String, required: true },
        },
        { _id: false },
      ),
    },
    paidAt: { type: Date },
  },
  { timestamps: true, versionKey: false, collection: 'subscription_periods' },
);
periodSchema.index({ subscriptionId: 1, start: 1 }, { name: 'subscription_start' });
// The sweep's renewal run and the one inside a charge may write one period at the same moment.
serializedWrites(periodSchema, 'subscription_period');

export type SubscriptionPeriodModel = Model<SubscriptionPeriodRecord>;

export function createSubscriptionPeriodModel(connection: Connection): SubscriptionPeriodModel {
  return connection.model<SubscriptionPeriodRecord>('SubscriptionPeriod', periodSchema);
}
