/**
 * The invoices entry's data-bound baseline: the database, key-vault and Redis work of rendering and storing one
 * invoice, done by plain clients (the `mongodb` driver with the same automatic decryption as the product's connection,
 * its `ClientEncryption`, ioredis, BullMQ) in a process of its own, plus the render through the same pool
 * (documents/render-pool.ts, INVOICE_RENDER_THREADS threads). One job of its own queue (INVOICE_CONCURRENCY at a time):
 *
 * read the invoice, read its company (name, shredded?), add the `finalized` audit job (the product re-sends it, under
 * the same id), read the company's invoice settings, read the payer profile (decrypted), build the view
 * (bench/invoices-view.ts), render, encrypt the PDF's base64 with the company's data key, insert the ciphertext, mark
 * the invoice stored with both SHA-256s, add the `rendered` audit job.
 *
 * Like the product's processes it counts its own commands (bench/instrument.ts).
 */
import { createHash } from 'node:crypto';
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ClientEncryption, MongoClient, type Binary, type Document } from 'mongodb';
import { transitionEventId, type AuditAction } from '../domain/audit-actions';
import { createRenderPool } from '../documents/render-pool';
import { ALGORITHMS, companyKeyAltName, kmsProvidersFor, localMasterKeyFor } from '../models/encryption';
import { invoiceSettingsId, type InvoiceSettingsRecord } from '../models/invoice-settings.model';
import type { InvoiceRecord } from '../models/invoice.model';
import { payerAccountDigest, payerAccountSource, payerProfileId } from '../models/payer-profile.model';
import { payerAccountNumber } from '../domain/invoice-view';
import { loadConfig } from '../platform/config';
import { auditJobId, auditJobOptions } from '../queues/audit.queue';
import { announceFailure, announceReady, serveParent } from './child';
import { installCommandCounters } from './instrument';
import { invoiceViewOf } from './invoices-view';

export const DATA_INVOICE_QUEUES = {
  invoices: 'bench-data-invoices',
  audit: 'bench-data-invoice-audit',
} as const;

export const DATA_INVOICE_COLLECTIONS = {
  invoices: 'data_invoices',
  documents: 'data_invoice_documents',
} as const;

const sha256Hex = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function main(): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  const kmsProviders = kmsProvidersFor(config.kms, localMasterKeyFor(config.kms, false));
  const keyVaultNamespace = config.keyVaultNamespace;
  const client = await MongoClient.connect(config.mongodbUri, {
    autoEncryption: { keyVaultNamespace, kmsProviders, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
  });
  const clientEncryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders });
  const db = client.db();
  const invoices = db.collection<InvoiceRecord>(DATA_INVOICE_COLLECTIONS.invoices);
  const documents = db.collection<Document & { _id: string }>(DATA_INVOICE_COLLECTIONS.documents);
  const companies = db.collection<Document & { _id: string }>('companies');
  const settingsCollection = db.collection<InvoiceSettingsRecord>('invoice_settings');
  const payerProfiles = db.collection<Document & { _id: string }>('payer_profiles');
  const pool = createRenderPool({ threads: config.workers.invoiceRenderThreads });

  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const producer = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const auditQueue = new Queue(DATA_INVOICE_QUEUES.audit, { connection: producer, prefix: config.queuePrefix });
  const audit = (invoice: InvoiceRecord, action: AuditAction, changes: Document[], occurredAt: Date) => {
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
  };

  const render = async (job: Job<{ invoiceId: string }>) => {
    const { invoiceId } = job.data;
    const invoice = await invoices.findOne({ _id: invoiceId });
    if (!invoice) throw new Error(`no invoice ${invoiceId}`);
    if (invoice.document) return { invoiceId, sha256: invoice.document.sha256, rendered: false };
    const company = await companies.findOne({ _id: invoice.companyId }, { projection: { name: 1, shreddedAt: 1 } });
    if (!company || company.shreddedAt) throw new Error(`company of ${invoiceId} missing or shredded`);
    await audit(
      invoice,
      invoice.kind === 'invoice' ? 'invoice.finalized' : 'credit_note.finalized',
      [
        { field: 'number', before: null, after: invoice.number ?? null },
        { field: 'status', before: 'draft', after: invoice.settleAs },
        { field: 'total', before: null, after: String(invoice.total) },
      ],
      invoice.finalizedAt ?? new Date(),
    );
    const settings = await settingsCollection.findOne({ _id: invoiceSettingsId(invoice.companyId) });
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
    await invoices.updateOne(
      { _id: invoice._id, documentStatus: 'pending' },
      { $set: { document, documentStatus: 'stored', updatedAt: new Date() } },
    );
    await audit(
      invoice,
      invoice.kind === 'invoice' ? 'invoice.rendered' : 'credit_note.rendered',
      [
        { field: 'document.sha256', before: null, after: document.sha256 },
        { field: 'phiLevel', before: null, after: settings?.phiLevel ?? 'minimal' },
      ],
      renderedAt,
    );
    return { invoiceId, sha256: document.sha256, rendered: true };
  };

  const worker = new Worker(DATA_INVOICE_QUEUES.invoices, render, {
    connection,
    prefix: config.queuePrefix,
    concurrency: config.workers.invoiceConcurrency,
  });
  await worker.waitUntilReady();

  serveParent({ reset: () => counters.reset(), stats: () => counters.stats() }, async () => {
    await worker.close();
    await pool.close();
    await auditQueue.close();
    connection.disconnect();
    producer.disconnect();
    await client.close();
  });
  announceReady({ pid: process.pid });
}

if (require.main === module) main().catch(announceFailure);
