import { Schema, type Connection, type Model } from 'mongoose';
import { PHI_LEVELS, type Letterhead, type PhiLevel } from '../domain/invoice';

/**
 * Invoice settings: one document per company (number prefix, PHI level, letterhead, whether a download needs a
 * stated reason) and one per office that overrides the company's PHI level or letterhead. Nothing here is PHI.
 */
export interface InvoiceSettingsRecord {
  /** `company|<companyId>` or `office|<companyId>|<officeId>`. */
  _id: string;
  companyId: string;
  officeId?: string;
  numberPrefix?: string;
  phiLevel?: PhiLevel;
  letterhead?: Letterhead;
  requireDownloadReason?: boolean;
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
    requireDownloadReason: { type: Boolean },
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

export type InvoiceSettingsModel = Model<InvoiceSettingsRecord>;

export function createInvoiceSettingsModel(connection: Connection): InvoiceSettingsModel {
  return connection.model<InvoiceSettingsRecord>('InvoiceSettings', invoiceSettingsSchema);
}
