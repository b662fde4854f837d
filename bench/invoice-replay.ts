/**
 * Rendering and storing one invoice with plain clients, for the data-bound replays (bench/invoices-baseline-process.ts
 * and, for the invoice each paid period gets, bench/renewals-baseline-process.ts): read the invoice, read its company
 * (name, shredded?), add the `finalized` audit job (the product re-sends it, under the same id), read the company's
 * invoice settings, read the payer profile (decrypted) at the `standard` PHI level, build the view
 * (bench/invoices-view.ts), render through the pool, encrypt the PDF's base64 with the company's data key, insert the
 * ciphertext, mark the invoice stored with both SHA-256s, add the `rendered` audit job.
 */
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { Binary, ClientEncryption, Db, Document } from 'mongodb';
import { transitionEventId, type AuditAction } from '../domain/audit-actions';
import { payerAccountNumber } from '../domain/invoice-view';
import type { RenderPool } from '../documents/render-pool';
import { ALGORITHMS, companyKeyAltName } from '../models/encryption';
import { invoiceSettingsId, type InvoiceSettingsRecord } from '../models/invoice-settings.model';
import type { InvoiceRecord } from '../models/invoice.model';
import { payerAccountDigest, payerAccountSource, payerProfileId } from '../models/payer-profile.model';
import { auditJobId, auditJobOptions } from '../queues/audit.queue';
import { invoiceViewOf } from './invoices-view';

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

export interface InvoiceReplayDeps {
  db: Db;
  clientEncryption: ClientEncryption;
  pool: RenderPool;
  auditQueue: Queue;
  /** The replay's own invoice and document collections (it writes to them). */
  collections: { invoices: string; documents: string };
}

/** An audit job of a document event, as the product adds it (same id, same options). */
export function documentAudit(
  auditQueue: Queue,
  invoice: Pick<InvoiceRecord, '_id' | 'companyId' | 'kind'>,
  action: AuditAction,
  changes: Document[],
  occurredAt: Date,
) {
  const eventId = transitionEventId(action, invoice._id);
  return auditQueue.add(
    'append',
    {
      eventId,
      companyId: invoice.companyId,
      action,
      outcome: 'success',
      severity: 'info',
      actor: { type: 'system', id: 'invoices-worker' },
      resource: { type: invoice.kind, id: invoice._id },
      changes,
      occurredAt: occurredAt.toISOString(),
    },
    { ...auditJobOptions, jobId: auditJobId(eventId) },
  );
}

export function finalizedChanges(invoice: InvoiceRecord): Document[] {
  return [
    { field: 'number', before: null, after: invoice.number ?? null },
    { field: 'status', before: 'draft', after: invoice.settleAs },
    { field: 'total', before: null, after: String(invoice.total) },
  ];
}

/**
 * The events of an invoice issued with its document rendered at issue, as the product's invoice worker path sends
 * them into the outcome's audit batch: finalized (at `finalizedAt`), then rendered (when the document was).
 */
export function issuedInvoiceEvents(
  invoice: InvoiceRecord & { document: { sha256: string; renderedAt: Date } },
  phiLevel: string,
  finalizedAt: Date,
): Document[] {
  const event = (action: string, changes: Document[], at: Date) => ({
    eventId: `${action}-${invoice._id}`,
    companyId: invoice.companyId,
    action,
    outcome: 'success',
    actor: { type: 'system', id: 'invoicing' },
    resource: { type: 'invoice', id: invoice._id },
    changes,
    occurredAt: at.toISOString(),
  });
  return [
    event('invoice.finalized', finalizedChanges(invoice), finalizedAt),
    event(
      'invoice.rendered',
      [
        { field: 'document.sha256', before: null, after: invoice.document.sha256 },
        { field: 'phiLevel', before: null, after: phiLevel },
      ],
      invoice.document.renderedAt,
    ),
  ];
}

export function createInvoiceReplay({ db, clientEncryption, pool, auditQueue, collections }: InvoiceReplayDeps) {
  const invoices = db.collection<InvoiceRecord>(collections.invoices);
  const documents = db.collection<Document & { _id: string }>(collections.documents);
  const companies = db.collection<Document & { _id: string }>('companies');
  const settingsCollection = db.collection<InvoiceSettingsRecord>('invoice_settings');
  const payerProfiles = db.collection<Document & { _id: string }>('payer_profiles');

  /** The PDF of an invoice in hand: company, settings, (profile), render, encrypt, store. */
  const renderAndStore = async (invoice: InvoiceRecord, company: Document) => {
    // The office's settings too when the document names an office (the product reads both, together).
    const [settings] = await Promise.all([
      settingsCollection.findOne({ _id: invoiceSettingsId(invoice.companyId) }),
      invoice.officeId
        ? settingsCollection.findOne({ _id: invoiceSettingsId(invoice.companyId, invoice.officeId) })
        : null,
    ]);
    const profile =
      settings?.phiLevel === 'standard'
        ? await payerProfiles.findOne(
            { _id: payerProfileId(invoice.companyId, invoice.customerRef) },
            { projection: { name: 1, billingAddress: 1 } },
          )
        : null;
    const accountCiphertext: Binary = await clientEncryption.encrypt(payerAccountSource(invoice.customerRef), {
      keyAltName: companyKeyAltName(invoice.companyId),
      algorithm: ALGORITHMS.deterministic,
    });
    const view = invoiceViewOf({
      invoice,
      companyName: String(company.name),
      account: payerAccountNumber(payerAccountDigest(accountCiphertext)),
      settings,
      profile: profile ? { name: profile.name, billingAddress: profile.billingAddress } : null,
    });
    const pdf = await pool.render(view);
    const ciphertext: Binary = await clientEncryption.encrypt(pdf.toString('base64'), {
      keyAltName: companyKeyAltName(invoice.companyId),
      algorithm: ALGORITHMS.random,
    });
    const renderedAt = new Date();
    await documents.insertOne({ _id: invoice._id, companyId: invoice.companyId, ciphertext, createdAt: renderedAt });
    const document = {
      sha256: sha256Hex(pdf),
      storedSha256: sha256Hex(ciphertext.buffer),
      size: pdf.length,
      renderedAt,
    };
    return { document, phiLevel: String(settings?.phiLevel ?? 'minimal') };
  };

  const rendered = (invoice: InvoiceRecord, document: { sha256: string; renderedAt: Date }, phiLevel: string) =>
    documentAudit(
      auditQueue,
      invoice,
      invoice.kind === 'invoice' ? 'invoice.rendered' : 'credit_note.rendered',
      [
        { field: 'document.sha256', before: null, after: document.sha256 },
        { field: 'phiLevel', before: null, after: phiLevel },
      ],
      document.renderedAt,
    );

  /** A render job: read the invoice and its company, re-send `finalized`, render and store, record, `rendered`. */
  const renderJob = async (invoiceId: string) => {
    const invoice = await invoices.findOne({ _id: invoiceId });
    if (!invoice) throw new Error(`no invoice ${invoiceId}`);
    if (invoice.document) return { invoiceId, sha256: invoice.document.sha256, rendered: false };
    const company = await companies.findOne({ _id: invoice.companyId }, { projection: { name: 1, shreddedAt: 1 } });
    if (!company || company.shreddedAt) throw new Error(`company of ${invoiceId} missing or shredded`);
    await documentAudit(
      auditQueue,
      invoice,
      invoice.kind === 'invoice' ? 'invoice.finalized' : 'credit_note.finalized',
      finalizedChanges(invoice),
      invoice.finalizedAt ?? new Date(),
    );
    const { document, phiLevel } = await renderAndStore(invoice, company);
    await invoices.updateOne(
      { _id: invoice._id, documentStatus: 'pending' },
      { $set: { document, documentStatus: 'stored', updatedAt: new Date() } },
    );
    await rendered(invoice, document, phiLevel);
    return { invoiceId, sha256: document.sha256, rendered: true };
  };

  /** An invoice being issued, rendered before its insert: read its company, render and store; no job, no re-read. */
  const renderNow = async (invoice: InvoiceRecord) => {
    const company = await companies.findOne({ _id: invoice.companyId }, { projection: { name: 1, shreddedAt: 1 } });
    if (!company || company.shreddedAt) throw new Error(`company of ${invoice._id} missing or shredded`);
    return renderAndStore(invoice, company);
  };

  return { renderJob, renderNow, rendered };
}
