import { Schema, type Connection, type Model } from 'mongoose';
import { tokenedDocuments } from './document-tokens';
import type { AuditEventInput } from '../domain/audit-event';
import { PHI_LEVELS, type Letterhead, type PhiLevel } from '../domain/invoice';
import { LETTERHEAD_STYLES, type LetterheadStyle } from '../domain/invoice-settings';

/**
 * Invoice settings: one document per company (number prefix, PHI level, letterhead and its style, the neutral
 * letterhead, whether a download needs a stated reason) and one per office that overrides the company's PHI level,
 * letterhead or letterhead style. Nothing here is PHI.
 */
export interface InvoiceSettingsRecord {
  /** The token of its last write (models/document-tokens.ts). */
  cacheToken?: string;
  /** `company|<companyId>` or `office|<companyId>|<officeId>`. */
  _id: string;
  companyId: string;
  officeId?: string;
  numberPrefix?: string;
  phiLevel?: PhiLevel;
  letterhead?: Letterhead;
  letterheadStyle?: LetterheadStyle;
  /** The company's: what offices with the `neutral` style print instead of their own letterhead. */
  neutralLetterhead?: Letterhead;
  requireDownloadReason?: boolean;
  /** The company's time zone for documents when it has no billing settings (BillingSettings' wins). */
  timeZone?: string;
  /** Audit events of a change not queued yet (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  updatedBy: { type: 'user' | 'service'; id: string };
  createdAt: Date;
  updatedAt: Date;
}

export function invoiceSettingsId(companyId: string, officeId?: string): string {
  return officeId ? `office|${companyId}|${officeId}` : `company|${companyId}`;
}

const invoiceSettingsSchema = new Schema<InvoiceSettingsRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    numberPrefix: { type: String },
    phiLevel: { type: String, enum: PHI_LEVELS },
    letterhead: {
      type: new Schema<Letterhead>(
        { name: { type: String, required: true }, address: { type: [String], default: [] } },
        { _id: false },
      ),
    },
    letterheadStyle: { type: String, enum: LETTERHEAD_STYLES },
    neutralLetterhead: {
      type: new Schema<Letterhead>(
        { name: { type: String, required: true }, address: { type: [String], default: [] } },
        { _id: false },
      ),
    },
    requireDownloadReason: { type: Boolean },
    timeZone: { type: String },
    pendingAudit: { type: Schema.Types.Mixed },
    updatedBy: {
      type: new Schema(
        { type: { type: String, required: true }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
  },
  { timestamps: true, versionKey: false, collection: 'invoice_settings' },
);

// Every write sets its cache token, Redis first (models/document-tokens.ts).
tokenedDocuments(invoiceSettingsSchema, 'invoice_settings');

export type InvoiceSettingsModel = Model<InvoiceSettingsRecord>;

export function createInvoiceSettingsModel(connection: Connection): InvoiceSettingsModel {
  return connection.model<InvoiceSettingsRecord>('InvoiceSettings', invoiceSettingsSchema);
}
