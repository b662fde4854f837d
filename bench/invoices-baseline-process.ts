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
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ClientEncryption, MongoClient } from 'mongodb';
import { createRenderPool } from '../documents/render-pool';
import { kmsProvidersFor, localMasterKeyFor } from '../models/encryption';
import { loadConfig } from '../platform/config';
import { announceFailure, announceReady, serveParent } from './child';
import { installCommandCounters } from './instrument';
import { createInvoiceReplay } from './invoice-replay';

export const DATA_INVOICE_QUEUES = {
  invoices: 'bench-data-invoices',
  audit: 'bench-data-invoice-audit',
} as const;

export const DATA_INVOICE_COLLECTIONS = {
  invoices: 'data_invoices',
  documents: 'data_invoice_documents',
} as const;

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
  const pool = createRenderPool({ threads: config.workers.invoiceRenderThreads });

  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const producer = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const auditQueue = new Queue(DATA_INVOICE_QUEUES.audit, { connection: producer, prefix: config.queuePrefix });
  const replay = createInvoiceReplay({
    db,
    clientEncryption,
    pool,
    auditQueue,
    collections: DATA_INVOICE_COLLECTIONS,
  });
  const render = (job: Job<{ invoiceId: string }>) => replay.renderJob(job.data.invoiceId);

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
