import { Schema, type Connection, type Model } from 'mongoose';
import { tokenedDocuments } from './document-tokens';
import type { AuditEventInput } from '../domain/audit-event';
import { paymentInfoSchema, type StoredPaymentInfo } from './company.model';

/** An office of a company. Its `payment_info` overrides the company's where the company's mode allows. */
export interface OfficeRecord {
  /** The token of its last write (models/document-tokens.ts). */
  cacheToken?: string;
  _id: string;
  companyId: string;
  officeId: string;
  payment_info?: StoredPaymentInfo;
  /** Audit events of a change to this document not yet queued (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  createdAt: Date;
  updatedAt: Date;
}

const officeSchema = new Schema<OfficeRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String, required: true },
    payment_info: { type: paymentInfoSchema },
    pendingAudit: { type: Schema.Types.Mixed },
  },
  { timestamps: true, versionKey: false, collection: 'offices' },
);
officeSchema.index({ companyId: 1, officeId: 1 }, { unique: true, name: 'company_office' });

// Every write sets its cache token, Redis first (models/document-tokens.ts).
tokenedDocuments(officeSchema, 'office');

export type OfficeModel = Model<OfficeRecord>;

export function officeRecordId(companyId: string, officeId: string): string {
  return `${companyId}-${officeId}`;
}

export function createOfficeModel(connection: Connection): OfficeModel {
  return connection.model<OfficeRecord>('Office', officeSchema);
}
