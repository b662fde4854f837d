import type { DocumentKind } from '../../domain/invoice';
import type { AuditEventInput } from '../../domain/audit-event';
import type { InvoiceView } from '../../domain/invoice';
import { effectiveInvoiceSettings } from '../../domain/invoice-settings';
import { invoiceView, type InvoiceDocumentInput } from '../../domain/invoice-view';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import { sha256Hex, storedHashOf, type InvoiceDocumentStore } from '../../models/invoice-document';
import { invoiceSettingsId } from '../../models/invoice-settings.model';
import type { InvoiceRecord, StoredDocumentRef } from '../../models/invoice.model';
import { payerProfileId } from '../../models/payer-profile.model';
import type { Logger } from '../../platform/logger';
import { documentEvent, finalizeInvoice, type IssueInvoiceDeps } from './issue-invoice';

export interface RenderInvoiceDeps {
  models: IssueInvoiceDeps['models'] & Pick<Models, 'Company' | 'PayerProfile'>;
  numbering: IssueInvoiceDeps['numbering'];
  documents: Pick<InvoiceDocumentStore, 'put'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  /** PDF bytes of a view: a worker thread renders it (the view travels over a MessagePort, never through Redis). */
  render: (view: InvoiceView) => Promise<Buffer>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  logger: Logger;
}

/**
 * What rendering one document came to: `stored` (now, or before), or why it cannot be: it does not exist, its
 * company was crypto-shredded (nothing of it can be read or written again).
 */
export type RenderOutcome =
  | { outcome: 'stored'; document: StoredDocumentRef; rendered: boolean; kind: DocumentKind }
  | { outcome: 'not_found' | 'company_shredded' };

const ACTOR: AuditEventInput['actor'] = { type: 'system', id: 'invoices-worker' };

/**
 * Renders and stores one invoice or credit note, in this process: finalizes it first if a crash left it a draft,
 * reads its settings and (at the `standard` PHI level only) its payer's profile, decrypted; minimizes them into an
 * `InvoiceView`; renders the PDF on a worker thread; stores it encrypted with the company's data key, with the
 * SHA-256 of the PDF and of the ciphertext recorded on the invoice. Safe to repeat: a stored document is kept.
 */
export async function renderInvoiceDocument(deps: RenderInvoiceDeps, invoiceId: string): Promise<RenderOutcome> {
  const { Invoice, Company, InvoiceSettings, PayerProfile } = deps.models;
  const found: InvoiceRecord | null = await Invoice.findById(invoiceId).lean();
  if (!found) return { outcome: 'not_found' };
  if (found.document) return { outcome: 'stored', document: found.document, rendered: false, kind: found.kind };
  const company = await Company.findById(found.companyId, { name: 1, shreddedAt: 1 }).lean();
  if (!company || company.shreddedAt) return { outcome: 'company_shredded' };
  // A draft left by a crash is finalized here; a settled one was finalized (and audited) when it was issued.
  const invoice = found.status === 'draft' || found.status === 'open' ? await finalizeInvoice(deps, found) : found;

  const [companySettings, officeSettings] = await Promise.all([
    InvoiceSettings.findById(invoiceSettingsId(invoice.companyId)).lean(),
    invoice.officeId ? InvoiceSettings.findById(invoiceSettingsId(invoice.companyId, invoice.officeId)).lean() : null,
  ]);
  const settings = effectiveInvoiceSettings(company.name, companySettings ?? undefined, officeSettings ?? undefined);
  // Minimum necessary: the payer's details are read (and decrypted) only when the document may show them.
  const profile =
    settings.phiLevel === 'standard'
      ? await PayerProfile.findById(payerProfileId(invoice.companyId, invoice.customerRef), {
          name: 1,
          billingAddress: 1,
        }).lean()
      : null;
  const creditsInvoice = invoice.creditsInvoiceId
    ? (await Invoice.findById(invoice.creditsInvoiceId, { number: 1 }).lean())?.number
    : undefined;
  const view = invoiceView({
    document: documentInput(invoice, creditsInvoice),
    payer: {
      reference: invoice.customerRef,
      ...(profile ? { name: String(profile.name), billingAddress: parseLines(profile.billingAddress) } : {}),
    },
    phiLevel: settings.phiLevel,
    letterhead: settings.letterhead,
  });
  const pdf = await deps.render(view);

  const ciphertext = await deps.encryption.encrypt(invoice.companyId, pdf.toString('base64'));
  const stored = await deps.documents.put({
    _id: invoice._id,
    companyId: invoice.companyId,
    ciphertext,
    createdAt: new Date(),
  });
  // A render that lost to an earlier one keeps the earlier bytes; their PDF hash is the same (rendering is
  // deterministic), and the stored hash is of the bytes that are actually there.
  const document: StoredDocumentRef = {
    sha256: sha256Hex(pdf),
    storedSha256: storedHashOf(stored.entry.ciphertext),
    size: pdf.length,
    renderedAt: stored.entry.createdAt,
  };
  await Invoice.updateOne(
    { _id: invoice._id, documentStatus: 'pending' },
    { $set: { document, documentStatus: 'stored' } },
  );
  await deps.enqueueAudit(
    documentEvent(
      invoice,
      'rendered',
      [
        { field: 'document.sha256', before: null, after: document.sha256 },
        { field: 'phiLevel', before: null, after: settings.phiLevel },
      ],
      document.renderedAt,
      ACTOR,
    ),
  );
  return { outcome: 'stored', document, rendered: true, kind: invoice.kind };
}

/** What the minimizing view takes of a stored invoice (the bench's replays build their views with it too). */
export function documentInput(invoice: InvoiceRecord, creditsInvoice: string | undefined): InvoiceDocumentInput {
  return {
    kind: invoice.kind,
    number: invoice.number ?? '',
    status: invoice.status,
    issuedOn: invoice.issuedAt,
    ...(invoice.period ? { period: invoice.period } : {}),
    lines: invoice.lines.map(({ description, quantity, unitAmount, amount }) => ({
      description,
      quantity,
      unitAmount,
      amount,
    })),
    currency: invoice.currency,
    amounts: {
      subtotal: invoice.subtotal,
      total: invoice.total,
      amountPaid: invoice.amountPaid,
      amountDue: invoice.amountDue,
    },
    ...(invoice.paidWith && invoice.paidAt ? { payment: { ...invoice.paidWith, paidAt: invoice.paidAt } } : {}),
    ...(creditsInvoice ? { creditsInvoice } : {}),
    timeZone: invoice.timeZone,
  };
}

/** A stored address (JSON array of lines, decrypted); anything else reads as no address. */
function parseLines(value: unknown): string[] {
  try {
    const parsed: unknown = JSON.parse(String(value));
    return Array.isArray(parsed) ? parsed.filter((line): line is string => typeof line === 'string') : [];
  } catch {
    return [];
  }
}
