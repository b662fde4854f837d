import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';
import type { AuditEventInput } from '../domain/audit-event';

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
  /** Audit events of a change not queued yet (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
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

/**
 * What is encrypted (deterministically, with the company's data key) to derive a payer's printed account number: the
 * same reference gives the same number, and without the key (or once the company is shredded) nothing links the
 * number back to the reference. The domain turns the SHA-256 of that ciphertext into `ACCT-…` (payerAccountNumber).
 */
export function payerAccountSource(customerRef: string): string {
  return `payer-account|${customerRef}`;
}

/** The digest the account number is made of: SHA-256 of the deterministic ciphertext as stored. */
export function payerAccountDigest(ciphertext: { buffer: Uint8Array }): Buffer {
  return createHash('sha256').update(ciphertext.buffer).digest();
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
    pendingAudit: { type: Schema.Types.Mixed },
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
