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
 * What may be shown of a saved card (to the upstream app, and so to staff): never its number. Not PHI and not
 * cardholder data on their own (PCI DSS allows the last four digits to be shown), so stored as plain values.
 */
export interface SavedCardDetails {
  /** Stripe's brand code: visa, mastercard, amex, … */
  brand: string;
  last4: string;
  expMonth: number;
  expYear: number;
}

export const CARD_BRAND_PATTERN = /^[a-z_]{1,32}$/;
export const CARD_LAST4_PATTERN = /^[0-9]{4}$/;

/** Whether gateway card details have the shape we show: anything else (a longer number above all) is not stored. */
export function isSavedCardDetails(value: SavedCardDetails): boolean {
  return (
    CARD_BRAND_PATTERN.test(value.brand) &&
    CARD_LAST4_PATTERN.test(value.last4) &&
    Number.isInteger(value.expMonth) &&
    value.expMonth >= 1 &&
    value.expMonth <= 12 &&
    Number.isInteger(value.expYear) &&
    value.expYear >= 2000 &&
    value.expYear <= 2199
  );
}

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
  /** The SetupIntent (seti_…) that saved it, which we created and recorded (models/setup-intent.model.ts). */
  setupIntentId?: string;
  /** Masked card details, from Stripe's PaymentMethod (methods saved before these were kept have none). */
  card?: SavedCardDetails;
  usage: SavedPaymentMethodUsage;
  status: SavedPaymentMethodStatus;
  /** Audit key of the event that saved it: a retry after a crash recognises its own insert. */
  savedBy: string;
  createdAt: Date;
  updatedAt: Date;
}

/** A saved method's id: `spm_` and 32 letters. */
export const SAVED_PAYMENT_METHOD_ID = /^spm_[a-p]{32}$/;

/**
 * `spm_` + a hash of company and SetupIntent id, spelled in the letters a–p (one per hex digit): a client sends this
 * id in request bodies, and hex digits can run long enough to pass for a card number (about 1 id in 500), which the
 * api refuses before it reads the body.
 */
export function savedPaymentMethodId(companyId: string, setupIntentId: string): string {
  const digest = createHash('sha256').update(`${companyId}|${setupIntentId}`).digest('hex');
  const letters = [...digest.slice(0, 32)].map((nibble) => String.fromCharCode(97 + parseInt(nibble, 16))).join('');
  return `spm_${letters}`;
}

const savedCardSchema = new Schema<SavedCardDetails>(
  {
    brand: { type: String, required: true, match: CARD_BRAND_PATTERN },
    last4: { type: String, required: true, match: CARD_LAST4_PATTERN },
    expMonth: { type: Number, required: true, min: 1, max: 12 },
    expYear: { type: Number, required: true, min: 2000, max: 2199 },
  },
  { _id: false },
);

const savedPaymentMethodSchema = new Schema<SavedPaymentMethodRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    customerRef: { type: String, required: true, match: CUSTOMER_REF_PATTERN },
    stripeCustomerId: { type: Schema.Types.Mixed, required: true },
    stripePaymentMethodId: { type: Schema.Types.Mixed, required: true },
    setupIntentId: { type: String },
    card: { type: savedCardSchema },
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
