import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';

/**
 * A payer's billing details, keyed by the upstream app's opaque payer reference: name, billing address and email,
 * each encrypted (random) with the company's data key and read back decrypted. Nothing clinical: the api refuses
 * any other field. Read only to render a document at the `standard` PHI level.
 */
export interface PayerProfileRecord {
  /** `payer_` + a hash of company and payer reference. */
  _id: string;
  companyId: string;
  customerRef: string;
  /** Ciphertext; a string once read back. */
  name: unknown;
  /** Ciphertext of the JSON array of lines; a string once read back. */
  billingAddress: unknown;
  /** Ciphertext; a string once read back. */
  email: unknown;
  updatedBy: { type: 'user' | 'service'; id: string };
  createdAt: Date;
  updatedAt: Date;
}

export function payerProfileId(companyId: string, customerRef: string): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([companyId, customerRef]))
    .digest('hex');
  return `payer_${digest.slice(0, 32)}`;
}

const payerProfileSchema = new Schema<PayerProfileRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    customerRef: { type: String, required: true },
    // Mixed: mongoose must pass the driver's encrypted Binary values through untouched.
    name: { type: Schema.Types.Mixed, required: true },
    billingAddress: { type: Schema.Types.Mixed, required: true },
    email: { type: Schema.Types.Mixed, required: true },
    updatedBy: {
      type: new Schema(
        { type: { type: String, required: true }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
  },
  { timestamps: true, versionKey: false, collection: 'payer_profiles' },
);

export type PayerProfileModel = Model<PayerProfileRecord>;

export function createPayerProfileModel(connection: Connection): PayerProfileModel {
  return connection.model<PayerProfileRecord>('PayerProfile', payerProfileSchema);
}
