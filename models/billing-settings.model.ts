import { Schema, type Connection, type Model } from 'mongoose';
import { tokenedDocuments } from './document-tokens';
import type { AuditEventInput } from '../domain/audit-event';
import type { DunningPolicy } from '../domain/dunning';

/** A company's billing settings: the time zone its billing days are counted in, and its dunning policy. */
export interface BillingSettingsRecord {
  /** The token of its last write (models/document-tokens.ts). */
  cacheToken?: string;
  /** The company id: one document per company. */
  _id: string;
  timeZone: string;
  dunning: DunningPolicy;
  /** Audit events of a change not queued yet (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  updatedBy: { type: 'user' | 'service'; id: string };
  createdAt: Date;
  updatedAt: Date;
}

const billingSettingsSchema = new Schema<BillingSettingsRecord>(
  {
    _id: { type: String, required: true },
    timeZone: { type: String, required: true },
    dunning: {
      type: new Schema(
        {
          retryDelaysDays: { type: [Number], required: true },
          finalState: { type: String, required: true, enum: ['unpaid', 'canceled'] },
        },
        { _id: false },
      ),
      required: true,
    },
    pendingAudit: { type: Schema.Types.Mixed },
    updatedBy: {
      type: new Schema(
        { type: { type: String, required: true }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
  },
  { timestamps: true, versionKey: false, collection: 'billing_settings' },
);

// Every write sets its cache token, Redis first (models/document-tokens.ts).
tokenedDocuments(billingSettingsSchema, 'billing_settings');

export type BillingSettingsModel = Model<BillingSettingsRecord>;

export function createBillingSettingsModel(connection: Connection): BillingSettingsModel {
  return connection.model<BillingSettingsRecord>('BillingSettings', billingSettingsSchema);
}
