import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';
import type { GatewayAccountRef } from '../domain/gateway-account';
import { CUSTOMER_REF_PATTERN } from './saved-payment-method.model';

/**
 * The Stripe Customer we made for one payer in one gateway account: a Customer exists in one Stripe account and
 * mode only, so a company whose offices have their own accounts has one per account. Made once: the `_id` derives
 * from (company, account, payer), inserted under that unique `_id`, and the Stripe idempotency key derives from the
 * same `_id`, so two racing requests (or a retry after a crash between Stripe's answer and our insert, within
 * Stripe's 24 h idempotency window) get the same Customer.
 */
export interface StripeCustomerRecord {
  /** `scus_` + a hash of company, gateway account and customer ref. */
  _id: string;
  companyId: string;
  /** The configuration whose key made it, named as its webhook endpoint is. */
  configurationId: string;
  accountId?: string;
  livemode: boolean;
  customerRef: string;
  /** Stripe's cus_… id: ciphertext (random) under the company's data key, a string once read back. */
  stripeCustomerId: unknown;
  /**
   * The same id encrypted deterministically (company key): found by equality, so a one-off payment made with the
   * `cus_…` id is invoiced under the payer's reference (one payer, one reference). Absent on older records.
   */
  stripeCustomerKey?: unknown;
  createdAt: Date;
  updatedAt: Date;
}

export function stripeCustomerRecordId(companyId: string, account: GatewayAccountRef, customerRef: string): string {
  const key = [companyId, account.configurationId, account.accountId ?? '', account.livemode ? 'live' : 'test'];
  const digest = createHash('sha256')
    .update(JSON.stringify([...key, customerRef]))
    .digest('hex');
  return `scus_${digest.slice(0, 32)}`;
}

/** The Stripe idempotency key of the Customer's creation: one Customer per record id, however often it is tried. */
export function stripeCustomerIdempotencyKey(recordId: string): string {
  return `customer-${recordId}`;
}

const stripeCustomerSchema = new Schema<StripeCustomerRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    configurationId: { type: String, required: true },
    accountId: { type: String },
    livemode: { type: Boolean, required: true },
    customerRef: { type: String, required: true, match: CUSTOMER_REF_PATTERN },
    stripeCustomerId: { type: Schema.Types.Mixed, required: true },
    stripeCustomerKey: { type: Schema.Types.Mixed },
  },
  { timestamps: true, versionKey: false, collection: 'stripe_customers' },
);
stripeCustomerSchema.index({ companyId: 1, stripeCustomerKey: 1 }, { name: 'company_customer_key' });

export type StripeCustomerModel = Model<StripeCustomerRecord>;

export function createStripeCustomerModel(connection: Connection): StripeCustomerModel {
  return connection.model<StripeCustomerRecord>('StripeCustomer', stripeCustomerSchema);
}
