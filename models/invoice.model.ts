import { Schema, type Connection, type Model } from 'mongoose';
import type { AuditEventInput } from '../domain/audit-event';
import { DOCUMENT_KINDS, INVOICE_STATUSES, type DocumentKind, type InvoiceStatus } from '../domain/invoice';
import { INVOICE_SOURCE_TYPES, type InvoiceSourceType } from '../domain/invoice-number';

/** One line as issued: the catalog code and its wording at the time (a document never changes once issued). */
export interface InvoiceLineRecord {
  code: string;
  description: string;
  quantity: number;
  /** Minor units (signed for an adjustment). */
  unitAmount: number;
  amount: number;
}

/** What the document's stored bytes must hash to: checked on every download. */
export interface StoredDocumentRef {
  /** SHA-256 (hex) of the PDF itself. */
  sha256: string;
  /** SHA-256 (hex) of the ciphertext as stored: checked before anything is decrypted. */
  storedSha256: string;
  size: number;
  renderedAt: Date;
}

/**
 * An invoice or a credit note: amounts, statuses, catalog codes and opaque ids only (the payer's details live,
 * encrypted, in their payer profile and are read only to render). Inserted as a draft under an id derived from its
 * source, numbered at finalization (models/invoice-number.model.ts), then rendered and stored by the invoices worker.
 */
export interface InvoiceRecord {
  /** `inv_…` (an invoice) or `cn_…` (a credit note), from the source's id. */
  _id: string;
  companyId: string;
  officeId?: string;
  kind: DocumentKind;
  status: InvoiceStatus;
  /** What it was issued for. */
  source: { type: InvoiceSourceType; id: string };
  /** Where finalization takes it: `paid` (the money moved), `uncollectible` (dunning gave up) or `open`. */
  settleAs: Exclude<InvoiceStatus, 'draft' | 'void'>;
  /** The opaque payer reference (a subscription's customerRef; a one-off payment's customer id). */
  customerRef: string;
  subscriptionId?: string;
  paymentId?: string;
  refundId?: string;
  /** A credit note's invoice. */
  creditsInvoiceId?: string;
  number?: string;
  sequence?: number;
  currency: string;
  lines: InvoiceLineRecord[];
  subtotal: number;
  total: number;
  amountPaid: number;
  amountDue: number;
  period?: { start: Date; end: Date };
  /** Card brand and last four only, when the card that paid is known. */
  paidWith?: { brand: string; last4: string };
  /** When its source settled (a test clock's time under a test clock): its issue date and number's year. */
  issuedAt: Date;
  /** The company's time zone when it was issued: its dates are printed in it. */
  timeZone: string;
  finalizedAt?: Date;
  paidAt?: Date;
  /** `pending` until its document is stored; the outbox sweep re-queues what stays pending. */
  documentStatus: 'pending' | 'stored';
  document?: StoredDocumentRef;
  /** 1 (absent) for the document as issued; 2 once an uncollectible invoice was paid (models/invoice-document.ts). */
  documentVersion?: number;
  /** When it was voided (`POST …/void`, or a credit note whose refund failed after it had succeeded). */
  voidedAt?: Date;
  /** Audit events of a change not queued yet (models/pending-audit.ts). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  createdAt: Date;
  updatedAt: Date;
}

const lineSchema = new Schema<InvoiceLineRecord>(
  {
    code: { type: String, required: true },
    description: { type: String, required: true },
    quantity: { type: Number, required: true, min: 1 },
    unitAmount: { type: Number, required: true },
    amount: { type: Number, required: true },
  },
  { _id: false },
);

const invoiceSchema = new Schema<InvoiceRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    kind: { type: String, required: true, enum: DOCUMENT_KINDS },
    status: { type: String, required: true, enum: INVOICE_STATUSES },
    source: {
      type: new Schema(
        { type: { type: String, required: true, enum: INVOICE_SOURCE_TYPES }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
    settleAs: { type: String, required: true, enum: ['open', 'paid', 'uncollectible'] },
    customerRef: { type: String, required: true },
    subscriptionId: { type: String },
    paymentId: { type: String },
    refundId: { type: String },
    creditsInvoiceId: { type: String },
    number: { type: String },
    sequence: { type: Number },
    currency: { type: String, required: true },
    lines: { type: [lineSchema], required: true },
    subtotal: { type: Number, required: true },
    total: { type: Number, required: true },
    amountPaid: { type: Number, required: true },
    amountDue: { type: Number, required: true },
    period: {
      type: new Schema({ start: { type: Date, required: true }, end: { type: Date, required: true } }, { _id: false }),
    },
    paidWith: {
      type: new Schema(
        { brand: { type: String, required: true }, last4: { type: String, required: true } },
        { _id: false },
      ),
    },
    issuedAt: { type: Date, required: true },
    timeZone: { type: String, required: true },
    finalizedAt: { type: Date },
    paidAt: { type: Date },
    documentStatus: { type: String, required: true, enum: ['pending', 'stored'] },
    documentVersion: { type: Number },
    voidedAt: { type: Date },
    pendingAudit: { type: Schema.Types.Mixed },
    document: {
      type: new Schema<StoredDocumentRef>(
        {
          sha256: { type: String, required: true },
          storedSha256: { type: String, required: true },
          size: { type: Number, required: true },
          renderedAt: { type: Date, required: true },
        },
        { _id: false },
      ),
    },
  },
  { timestamps: true, versionKey: false, collection: 'invoices' },
);
// Lists: a company's documents of one kind, newest first (ids are hashes, so pages go by creation time and id).
invoiceSchema.index({ companyId: 1, kind: 1, createdAt: -1, _id: -1 }, { name: 'company_kind_created' });
// A refund's credit note finds its payment's invoice; the list filters by payer and subscription.
invoiceSchema.index({ companyId: 1, paymentId: 1 }, { name: 'company_payment' });
invoiceSchema.index({ companyId: 1, customerRef: 1 }, { name: 'company_customer_ref' });
// The outbox sweep: documents not stored yet.
invoiceSchema.index({ documentStatus: 1, updatedAt: 1 }, { name: 'document_status_updated' });

export type InvoiceModel = Model<InvoiceRecord>;

export function createInvoiceModel(connection: Connection): InvoiceModel {
  return connection.model<InvoiceRecord>('Invoice', invoiceSchema);
}
