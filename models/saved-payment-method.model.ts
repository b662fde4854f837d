import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';
import { containsCardNumber } from '../domain/card-number';

/**
 * Our reference to the payer, as the upstream app knows them: an opaque id
 * (letters, digits, `_`, `-`), never a name, email, date of birth or card
 * number, because it also travels in Stripe metadata and Stripe takes no PHI.
 */
export const CUSTOMER_REF_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function isCustomerRef(value: unknown): value is string {
  return typeof value === 'string' && CUSTOMER_REF_PATTERN.test(value) && !containsCardNumber(value);
}

export const SAVED_PAYMENT_METHOD_USAGES = ['off_session', 'on_session'] as const;
export type SavedPaymentMethodUsage = (typeof SAVED_PAYMENT_METHOD_USAGES)[number];

export const SAVED_PAYMENT_METHOD_STATUSES = ['active'] as const;
export type SavedPaymentMethodStatus = (typeof SAVED_PAYMENT_METHOD_STATUSES)[number];

/**
 * A payment method the payer saved through a Stripe SetupIntent, for
 * subscriptions to charge later (off-session). Found by (company, customer ref).
 */
export interface SavedPaymentMethodRecord {
  /** `spm_` + a hash of company and SetupIntent id: a redelivery or replay finds the same record. */
  _id: string;
  companyId: string;
  officeId?: string;
  customerRef: string;
  /**
   * Stripe's customer (cus_…) and PaymentMethod (pm_…) ids: ciphertext (random)
   * under the company's data key, strings once read back. Random, not
   * deterministic: nothing looks them up by value; the record is found by
   * company and customer ref, and by its id.
   */
  stripeCustomerId: unknown;
  stripePaymentMethodId: unknown;
  usage: SavedPaymentMethodUsage;
  status: SavedPaymentMethodStatus;
  /** Audit key of the event that saved it: a retry after a crash recognises its own insert. */
  savedBy: string;
  createdAt: Date;
  updatedAt: Date;
}

export function savedPaymentMethodId(companyId: string, setupIntentId: string): string {
  const digest = createHash('sha256').update(`${companyId}|${setupIntentId}`).digest('hex');
  return `spm_${digest.slice(0, 32)}`;
}

const savedPaymentMethodSchema = new Schema<SavedPaymentMethodRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    customerRef: { type: String, required: true, match: CUSTOMER_REF_PATTERN },
    stripeCustomerId: { type: Schema.Types.Mixed, required: true },
    stripePaymentMethodId: { type: Schema.Types.Mixed, required: true },
    usage: { type: String, required: true, enum: SAVED_PAYMENT_METHOD_USAGES },
    status: { type: String, required: true, enum: SAVED_PAYMENT_METHOD_STATUSES },
    savedBy: { type: String, required: true },
  },
  { timestamps: true, versionKey: false, collection: 'saved_payment_methods' },
);
// Subscriptions look up a payer's saved methods.
savedPaymentMethodSchema.index({ companyId: 1, customerRef: 1 }, { name: 'company_customer_ref' });

export type SavedPaymentMethodModel = Model<SavedPaymentMethodRecord>;

export function createSavedPaymentMethodModel(connection: Connection): SavedPaymentMethodModel {
  return connection.model<SavedPaymentMethodRecord>('SavedPaymentMethod', savedPaymentMethodSchema);
}
