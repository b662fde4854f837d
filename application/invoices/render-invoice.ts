import type { SettingsReads } from '../../models/settings-cache';
import type { DocumentKind } from '../../domain/invoice';
import type { AuditEventInput } from '../../domain/audit-event';
import type { InvoiceView } from '../../domain/invoice';
import { effectiveInvoiceSettings } from '../../domain/invoice-settings';
import { invoiceView, payerAccountNumber, type InvoiceDocumentInput } from '../../domain/invoice-view';
import type { Models } from '../../models';
import { CompanyShreddedError, type FieldEncryption } from '../../models/encryption';
import { documentKey, sha256Hex, storedHashOf, type InvoiceDocumentStore } from '../../models/invoice-document';
import { invoiceSettingsId } from '../../models/invoice-settings.model';
import type { InvoiceRecord, StoredDocumentRef } from '../../models/invoice.model';
import { payerAccountDigest, payerAccountSource, payerProfileId } from '../../models/payer-profile.model';
import type { Logger } from '../../platform/logger';
import { finalizeInvoice, paidEvent, renderedEvent, type IssueInvoiceDeps } from './issue-invoice';

export interface RenderInvoiceDeps {
  models: IssueInvoiceDeps['models'] & Pick<Models, 'Company' | 'PayerProfile'>;
  numbering: IssueInvoiceDeps['numbering'];
  documents: Pick<InvoiceDocumentStore, 'put'>;
  encryption: Pick<FieldEncryption, 'encrypt' | 'decrypt'>;
  /** PDF bytes of a view: a worker thread renders it (the view travels over a MessagePort, never through Redis). */
  render: (view: InvoiceView) => Promise<Buffer>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** The worker's settings cache (models/settings-cache.ts): the company and invoice settings read through it. */
  settings?: SettingsReads;
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
export async function renderInvoiceDocument(
  deps: RenderInvoiceDeps,
  invoiceId: string,
  options: { finalizedQueued?: boolean } = {},
): Promise<RenderOutcome> {
  try {
    return await renderOnce(deps, invoiceId, options);
  } catch (error) {
    // Shredded while this render was in flight: nothing of it is stored, and no key is created for it.
    if (error instanceof CompanyShreddedError) return { outcome: 'company_shredded' };
    throw error;
  }
}

async function renderOnce(
  deps: RenderInvoiceDeps,
  invoiceId: string,
  options: { finalizedQueued?: boolean },
): Promise<RenderOutcome> {
  const { Invoice } = deps.models;
  const found: InvoiceRecord | null = await Invoice.findById(invoiceId).lean();
  if (!found) return { outcome: 'not_found' };
  if (found.document) return { outcome: 'stored', document: found.document, rendered: false, kind: found.kind };
  const company = await companyOf(deps, found.companyId, found.officeId);
  if (!company || company.shreddedAt) return { outcome: 'company_shredded' };
  // A draft left by a crash is finalized here. A settled one was finalized when it was issued, but its event may not
  // have been queued (Redis down, then the sweep found the invoice already there): it is sent again, under its fixed
  // id, so it is recorded once whoever sends it. The same for an uncollectible invoice paid later. Not when its issuer
  // queued this job after queuing the event (`finalizedQueued`): inside an outcome's batch job, a second send would be
  // a real second append attempt, not a job BullMQ drops by its id.
  const settled = found.number !== undefined && found.status !== 'draft' && found.status !== 'open';
  const invoice = options.finalizedQueued && settled ? found : await finalizeInvoice(deps, found);
  if (invoice.status === 'paid' && (invoice.documentVersion ?? 1) > 1) await deps.enqueueAudit(paidEvent(invoice));

  const rendered = await renderAndStore(deps, invoice, company.name);
  if (!rendered) return { outcome: 'company_shredded' };
  const { document, phiLevel } = rendered;
  await Invoice.updateOne(
    { _id: invoice._id, documentStatus: 'pending', documentVersion: invoice.documentVersion ?? { $exists: false } },
    { $set: { document, documentStatus: 'stored' } },
  );
  await deps.enqueueAudit(renderedEvent(invoice, document, phiLevel, ACTOR));
  return { outcome: 'stored', document, rendered: true, kind: invoice.kind };
}

/**
 * Renders a finalized document the caller holds (an invoice being issued: nothing is read again) and stores its PDF,
 * encrypted: the company's name and shredded mark, its invoice settings and (at the `standard` PHI level) the payer's
 * profile are read here. Undefined when the company was shredded (nothing stored).
 */
export async function renderDocumentNow(
  deps: Omit<RenderInvoiceDeps, 'numbering' | 'enqueueAudit' | 'logger'>,
  invoice: InvoiceRecord,
): Promise<{ document: StoredDocumentRef; phiLevel: string } | undefined> {
  try {
    const company = await companyOf(deps, invoice.companyId, invoice.officeId);
    if (!company || company.shreddedAt) return undefined;
    return await renderAndStore(deps, invoice, company.name);
  } catch (error) {
    if (error instanceof CompanyShreddedError) return undefined;
    throw error;
  }
}

/**
 * Reads what the document shows besides itself (settings; the payer's profile only at the `standard` PHI level),
 * minimizes it into an `InvoiceView`, renders it on a worker thread and stores it encrypted (the PDF's hash in the same
 * insert as its bytes). A render that finds bytes stored before (a retry, a racing render) keeps them. Undefined when
 * the company was shredded meanwhile.
 */
async function renderAndStore(
  deps: Omit<RenderInvoiceDeps, 'numbering' | 'enqueueAudit' | 'logger'>,
  invoice: InvoiceRecord,
  companyName: string,
): Promise<{ document: StoredDocumentRef; phiLevel: string } | undefined> {
  const { Invoice, Company, InvoiceSettings, PayerProfile } = deps.models;
  const { settings: reads } = deps;
  const [companySettings, officeSettings, account] = await Promise.all([
    reads
      ? reads.invoiceSettings(invoice.companyId)
      : InvoiceSettings.findById(invoiceSettingsId(invoice.companyId)).lean(),
    invoice.officeId
      ? reads
        ? reads.invoiceSettings(invoice.companyId, invoice.officeId)
        : InvoiceSettings.findById(invoiceSettingsId(invoice.companyId, invoice.officeId)).lean()
      : null,
    payerAccount(deps, invoice.companyId, invoice.customerRef),
  ]);
  const settings = effectiveInvoiceSettings(companyName, companySettings ?? undefined, officeSettings ?? undefined);
  // Minimum necessary: the payer's details are read (and decrypted) only when the document may show them.
  const [profile, creditsInvoice] = await Promise.all([
    settings.phiLevel === 'standard'
      ? PayerProfile.findById(payerProfileId(invoice.companyId, invoice.customerRef), {
          name: 1,
          billingAddress: 1,
        }).lean()
      : null,
    invoice.creditsInvoiceId
      ? Invoice.findById(invoice.creditsInvoiceId, { number: 1 })
          .lean()
          .then((credited) => credited?.number)
      : undefined,
  ]);
  const view = invoiceView({
    document: documentInput(invoice, creditsInvoice),
    account,
    payer: profile ? { name: String(profile.name), billingAddress: parseLines(profile.billingAddress) } : {},
    phiLevel: settings.phiLevel,
    letterhead: settings.letterhead,
  });
  const pdf = await deps.render(view);

  const ciphertext = await deps.encryption.encrypt(invoice.companyId, pdf.toString('base64'));
  // Shredding tombstones first: a key still cached here (libmongocrypt keeps one up to a minute) stores nothing either.
  // Through the settings cache, a Redis read of the company's token now stands for the database's answer.
  const notShredded = (await deps.settings?.certainlyNotShredded(invoice.companyId)) ?? false;
  if (!notShredded && (await Company.exists({ _id: invoice.companyId, shreddedAt: { $exists: true } }))) {
    return undefined;
  }
  // The PDF's hash goes into the same insert as its bytes.
  const stored = await deps.documents.put({
    _id: documentKey(invoice),
    companyId: invoice.companyId,
    ciphertext,
    sha256: sha256Hex(pdf),
    size: pdf.length,
    createdAt: new Date(),
  });
  // A render that lost to an earlier one (or found the bytes of one killed before it recorded them) keeps the earlier
  // bytes and records their hash, not its own: the inputs may have changed in between.
  const document: StoredDocumentRef = {
    ...(stored.created ? { sha256: sha256Hex(pdf), size: pdf.length } : await hashOfStored(deps, stored.entry)),
    storedSha256: storedHashOf(stored.entry.ciphertext),
    renderedAt: stored.entry.createdAt,
  };
  return { document, phiLevel: settings.phiLevel };
}

/** The company's name and shredded mark: through the settings cache when the worker has one. */
function companyOf(
  deps: Pick<RenderInvoiceDeps, 'models' | 'settings'>,
  companyId: string,
  officeId?: string,
): Promise<{ name: string; shreddedAt?: Date } | null> {
  if (deps.settings) return deps.settings.company(companyId, officeId);
  return deps.models.Company.findById(companyId, { name: 1, shreddedAt: 1 }).lean();
}

/**
 * The payer's printed account number: keyed by the company's data key (deterministic encryption of the reference,
 * hashed), so a document never shows the upstream's reference, which may be a record number.
 */
export async function payerAccount(
  deps: Pick<RenderInvoiceDeps, 'encryption'>,
  companyId: string,
  customerRef: string,
): Promise<string> {
  const ciphertext = await deps.encryption.encrypt(companyId, payerAccountSource(customerRef), 'deterministic');
  return payerAccountNumber(payerAccountDigest(ciphertext));
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

/** The PDF hash and size of bytes stored before: as recorded with them, or (an older entry) by decrypting them. */
async function hashOfStored(
  deps: Pick<RenderInvoiceDeps, 'encryption'>,
  entry: { ciphertext: Parameters<FieldEncryption['decrypt']>[0]; sha256?: string; size?: number },
): Promise<{ sha256: string; size: number }> {
  if (entry.sha256 !== undefined && entry.size !== undefined) return { sha256: entry.sha256, size: entry.size };
  const pdf = Buffer.from(String(await deps.encryption.decrypt(entry.ciphertext)), 'base64');
  return { sha256: sha256Hex(pdf), size: pdf.length };
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
