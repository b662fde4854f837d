import { Schema, type Connection, type Model } from 'mongoose';
import { tokenedDocuments } from './document-tokens';
import type { AuditEventInput } from '../domain/audit-event';
import { PAYMENT_MODES, type Compliance, type PaymentMode } from '../domain/payment-config';

/**
 * `payment_info`: the JSON field the product was specified with, on companies
 * and (as an override) on offices. Versioned. Secrets are stored as ciphertext
 * (BSON binary subtype 6) under the company's data key and read back decrypted.
 */
export const PAYMENT_INFO_VERSION = 2;

export interface StoredPaymentInfo {
  version: number;
  gateway: 'stripe';
  /** Company level only. */
  mode?: PaymentMode;
  credentials: {
    /** Random encryption. */
    secretKey?: unknown;
    /** Publishable keys are public by design (they ship to browsers): stored in clear. */
    publishableKey?: string;
    /** Random encryption; two during a rotation. */
    webhookSigningSecrets?: unknown[];
    /**
     * Deterministic encryption: Stripe names the account (acct_…) in Connect
     * webhooks, and the configuration is found by equality on it.
     */
    accountId?: unknown;
  };
  statementDescriptor?: string;
  defaultCurrency?: string;
  dunningPolicy?: string;
  compliance?: Compliance;
  updatedAt?: Date;
  updatedBy?: string;
}

export interface CompanyRecord {
  /** The token of its last write (models/document-tokens.ts). */
  cacheToken?: string;
  _id: string;
  name: string;
  payment_info?: StoredPaymentInfo;
  /** Set when the company's data key was destroyed (crypto-shredding). */
  shreddedAt?: Date;
  /** Audit events of a change to this document not yet queued (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  createdAt: Date;
  updatedAt: Date;
}

export const paymentInfoSchema = new Schema<StoredPaymentInfo>(
  {
    version: { type: Number, required: true, default: PAYMENT_INFO_VERSION },
    gateway: { type: String, required: true, enum: ['stripe'], default: 'stripe' },
    mode: { type: String, enum: PAYMENT_MODES },
    // Mixed: mongoose must pass the driver's encrypted Binary values through untouched.
    credentials: { type: Schema.Types.Mixed, default: {} },
    statementDescriptor: { type: String },
    defaultCurrency: { type: String },
    dunningPolicy: { type: String },
    compliance: { type: Schema.Types.Mixed },
    updatedAt: { type: Date },
    updatedBy: { type: String },
  },
  { _id: false, minimize: false },
);

const companySchema = new Schema<CompanyRecord>(
  {
    _id: { type: String, required: true },
    name: { type: String, required: true, trim: true, maxlength: 200 },
    payment_info: { type: paymentInfoSchema },
    shreddedAt: { type: Date },
    pendingAudit: { type: Schema.Types.Mixed },
  },
  { timestamps: true, versionKey: false, collection: 'companies' },
);

// Every write sets its cache token, Redis first (models/document-tokens.ts).
tokenedDocuments(companySchema, 'company');

export type CompanyModel = Model<CompanyRecord>;

export function createCompanyModel(connection: Connection): CompanyModel {
  return connection.model<CompanyRecord>('Company', companySchema);
}
