/**
 * A bench child serving the baselines each entry is compared with, on the same
 * services and queue prefix as the product, with plain clients (the `mongodb`
 * driver, ioredis, BullMQ, fetch) and no product code on the path:
 *
 * - server (argv[2] "server"): Fastify with
 *   - `/bare`: the component limit, a route that does nothing;
 *   - `POST /noop/payments/:companyId`: one no-op job added, the limit of a queue-driven path;
 *   - `POST /data/payments/:companyId`, `POST /data/webhooks/:companyId`: the data-bound
 *     baselines, the same MongoDB and Redis commands the product's route issues
 *     (payments: the company's cache token (an MGET; the company read once and kept, as the api's settings cache
 *     keeps it), insert the record, the rate limiter's script, the charge's add; webhooks: the same MGET, insert the
 *     event, the event's and its receipt's adds).
 *   - `POST /data+crypto/payments/:companyId`, `POST /data+crypto/webhooks/:companyId`: the same, with the
 *     cryptography the product's ingress must add (served by a process of its own): the request's ip and user agent
 *     sealed under the company's data key; a POST's bearer token digested (the api's verified-token cache key); a
 *     delivery's signature checked by the Stripe SDK on the raw bytes and its payload encrypted.
 * - workers (argv[2] "workers"): BullMQ workers for the no-op jobs and data-bound
 *   charge and audit workers that replay the product's commands (and a charge's two
 *   Stripe requests) with plain clients. A succeeded charge is invoiced as the product
 *   invoices it: the payer reference and the company's billing and invoice settings
 *   read, the number inserted, the PDF rendered on the render threads (bare PDFKit)
 *   and stored encrypted (bench/invoice-replay.ts `renderNow`), the invoice inserted
 *   naming it; the outcome's audit events (requested, succeeded, finalized, rendered) are
 *   appended in one insert by the charge job itself, as the product's charge job does.
 *
 * Like the product's processes it counts its own commands, so a run shows the
 * replay issues what the product does.
 */
import { createHash } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import Stripe from 'stripe';
import { Queue, Worker, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { ClientEncryption, MongoClient, type Collection, type Document } from 'mongodb';
import { serviceLine } from '../domain/invoice-catalog';
import { DEFAULT_INVOICE_NUMBER_PREFIX, formatDocumentNumber, invoiceIdFor, yearIn } from '../domain/invoice-number';
import { createRenderPool } from '../documents/render-pool';
import { ALGORITHMS, companyKeyAltName, kmsProvidersFor, localMasterKeyFor } from '../models/encryption';
import { preferLibmongocryptCrypto } from '../models/native-crypto';
import { invoiceSettingsId } from '../models/invoice-settings.model';
import type { InvoiceRecord } from '../models/invoice.model';
import { createInvoiceReplay, issuedInvoiceEvents } from './invoice-replay';
import { ulid } from '../platform/ids';
import { loadConfig, type AppConfig } from '../platform/config';
import { auditJobOptions } from '../queues/audit.queue';
import { chargeJobOptions } from '../queues/charges.queue';
import { stripeEventJobOptions } from '../queues/stripe-events.queue';
import { announceFailure, announceReady, serveParent } from './child';
import { BENCH_WEBHOOK_SECRET } from './support';
import { installCommandCounters } from './instrument';

export interface BaselineInfo {
  url?: string;
  pid: number;
}

/** Queues of the baselines, apart from the product's so their completions are counted apart. */
export const BASELINE_QUEUES = {
  noop: 'bench-noop',
  /** No-op jobs taken at the audit worker's concurrency. */
  noopAudit: 'bench-noop-audit',
  charges: 'bench-data-charges',
  audit: 'bench-data-audit',
  stripeEvents: 'bench-data-stripe-events',
} as const;

/** The collections the data-bound baselines write (in the bench world's database, dropped with it). */
export const BASELINE_COLLECTIONS = {
  payments: 'data_payments',
  webhookEvents: 'data_webhook_events',
  /** The `+crypto` route's: it is sent the same events as the data-bound route. */
  cryptoWebhookEvents: 'data_crypto_webhook_events',
  auditEvents: 'data_audit_events',
  invoices: 'data_invoices',
  invoiceNumbers: 'data_invoice_numbers',
  documents: 'data_invoice_documents',
} as const;

// The same work as @fastify/rate-limit's Redis store: INCR, PEXPIRE on the first hit, else PTTL.
const RATE_LIMIT_LUA = `
local current = redis.call('INCR', KEYS[1])
if current == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) return {current, tonumber(ARGV[1])} end
return {current, redis.call('PTTL', KEYS[1])}`;

interface PaymentBody {
  amount: number;
  currency: string;
  customer: string;
  paymentMethod: string;
  officeId?: string;
}

async function connectData(config: AppConfig) {
  // Reads of encrypted fields decrypt as the product's do; writes encrypt explicitly (the invoice replay, the
  // `+crypto` routes), with the crypto primitives the product's processes use.
  preferLibmongocryptCrypto();
  const kmsProviders = kmsProvidersFor(config.kms, localMasterKeyFor(config.kms, false));
  const keyVaultNamespace = config.keyVaultNamespace;
  const client = await MongoClient.connect(config.mongodbUri, {
    autoEncryption: { keyVaultNamespace, kmsProviders, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
  });
  const db = client.db();
  return {
    client,
    db,
    clientEncryption: new ClientEncryption(client, { keyVaultNamespace, kmsProviders }),
    companies: db.collection<Document>('companies'),
    payments: db.collection<Document>(BASELINE_COLLECTIONS.payments),
    webhookEvents: db.collection<Document>(BASELINE_COLLECTIONS.webhookEvents),
    cryptoWebhookEvents: db.collection<Document>(BASELINE_COLLECTIONS.cryptoWebhookEvents),
    auditEvents: db.collection<Document>(BASELINE_COLLECTIONS.auditEvents),
  };
}

const jobOptions = (options: JobsOptions, jobId: string): JobsOptions => ({ ...options, jobId });

function auditJob(companyId: string, action: string, resourceId: string) {
  return {
    eventId: `${action}-${resourceId}`,
    companyId,
    action,
    outcome: 'success',
    actor: { type: 'service', id: 'svc-bench' },
    resource: { type: 'payment', id: resourceId },
    requestId: `req_${ulid()}`,
    occurredAt: new Date().toISOString(),
  };
}

async function startServer(config: AppConfig): Promise<{ url: string; stop(): Promise<void> }> {
  const data = await connectData(config);
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false });
  redis.defineCommand('benchRateLimit', { numberOfKeys: 1, lua: RATE_LIMIT_LUA });
  const rateLimit = (key: string) =>
    (redis as unknown as { benchRateLimit(key: string, ms: number): Promise<unknown> }).benchRateLimit(key, 60_000);
  const queue = (name: string) => new Queue(name, { connection: redis, prefix: config.queuePrefix });
  const queues = {
    noop: queue(BASELINE_QUEUES.noop),
    charges: queue(BASELINE_QUEUES.charges),
    audit: queue(BASELINE_QUEUES.audit),
    stripeEvents: queue(BASELINE_QUEUES.stripeEvents),
  };

  const app = Fastify();
  app.get('/bare', async () => ({ ok: true }));
  app.post('/bare', async () => ({ ok: true }));

  app.post('/noop/payments/:companyId', async (request, reply) => {
    const paymentId = `pay_${ulid()}`;
    await queues.noop.add('noop', { paymentId }, jobOptions(chargeJobOptions, `noop-${paymentId}`));
    return reply.status(202).send({ id: paymentId, status: 'queued' });
  });

  // As the product's api (its settings cache): a company read once and kept, each request asking Redis whether it is
  // current (an MGET of the company's cache token).
  const companies = new Map<string, Document>();
  const knownCompany = async (companyId: string) => {
    await redis.mget(`${config.queuePrefix}:doc-token:company:${companyId}`);
    if (!companies.has(companyId)) {
      const company = await data.companies.findOne({ _id: companyId as never });
      if (company) companies.set(companyId, company);
    }
    return companies.has(companyId);
  };

  // The cryptography the product's ingress must do beyond the data work, with plain clients: what the `+crypto`
  // routes add to the data-bound ones. A request's ip and user agent sealed under the company's data key (two
  // encryptions, as api/audit-context.ts); a POST's bearer token digested (the api's verified-token cache key); a Stripe
  // delivery's signature checked by the SDK on the raw bytes and its payload encrypted.
  const encrypt = (companyId: string, value: string) =>
    data.clientEncryption.encrypt(value, { keyAltName: companyKeyAltName(companyId), algorithm: ALGORITHMS.random });
  const seal = async (companyId: string, request: FastifyRequest) => {
    const sealed = async (value: string) => Buffer.from((await encrypt(companyId, value)).buffer).toString('base64');
    const userAgent = request.headers['user-agent'];
    return {
      sourceIp: await sealed(request.ip),
      ...(typeof userAgent === 'string' && userAgent ? { userAgent: await sealed(userAgent) } : {}),
    };
  };

  const payment = (withCrypto: boolean) => async (request: FastifyRequest, reply: FastifyReply) => {
    const { companyId } = request.params as { companyId: string };
    const body = request.body as PaymentBody;
    const idempotencyKey = String(request.headers['idempotency-key']);
    if (withCrypto) createHash('sha256').update(String(request.headers.authorization)).digest();
    await rateLimit(`${config.queuePrefix}:data-rate-limit:${companyId}`);
    if (!(await knownCompany(companyId))) return reply.status(404).send({ error: 'company_not_found' });
    const paymentId = `pay_${ulid()}`;
    const now = new Date();
    await data.payments.insertOne({
      _id: paymentId as never,
      companyId,
      idempotencyKey,
      requestHash: createHash('sha256').update(JSON.stringify(body)).digest('hex'),
      ...body,
      status: 'queued',
      requestedBy: { type: 'user', id: 'usr-dev' },
      requestId: request.id,
      ...(withCrypto ? { sealedContext: await seal(companyId, request) } : {}),
      attempts: 0,
      createdAt: now,
      updatedAt: now,
    });
    // One add, as the product's ingress: the charge's run sends `payment.requested` first in its outcome's batch.
    await queues.charges.add('charge', { paymentId }, jobOptions(chargeJobOptions, `charge-${paymentId}`));
    return reply.status(202).send({ id: paymentId, status: 'queued' });
  };
  app.post('/data/payments/:companyId', payment(false));
  app.post('/data+crypto/payments/:companyId', payment(true));

  const webhook = (withCrypto: boolean) => async (request: FastifyRequest) => {
    const { companyId } = request.params as { companyId: string };
    const raw = request.body as Buffer;
    if (!(await knownCompany(companyId))) throw new Error('no such company');
    const event = (
      withCrypto
        ? Stripe.webhooks.constructEvent(raw, String(request.headers['stripe-signature']), BENCH_WEBHOOK_SECRET, 300)
        : JSON.parse(raw.toString('utf8'))
    ) as { id: string; type: string; created: number; livemode: boolean };
    const payload = raw.toString('utf8');
    // Its own inbox and job ids: the two routes are sent the same events.
    const jobKey = withCrypto ? `crypto-${event.id}` : event.id;
    await (withCrypto ? data.cryptoWebhookEvents : data.webhookEvents).insertOne({
      _id: event.id as never,
      companyId,
      type: event.type,
      livemode: event.livemode,
      created: new Date(event.created * 1000),
      receivedAt: new Date(),
      status: 'received',
      payload: withCrypto ? await encrypt(companyId, payload) : payload,
    });
    const receipt = auditJob(companyId, 'webhook.received', jobKey);
    await Promise.all([
      queues.stripeEvents.add(
        'apply',
        { eventId: event.id },
        jobOptions(stripeEventJobOptions, `stripe-event-${jobKey}`),
      ),
      queues.audit.add(
        'append',
        withCrypto ? { ...receipt, sealed: await seal(companyId, request) } : receipt,
        jobOptions(auditJobOptions, `audit-webhook.received-${jobKey}`),
      ),
    ]);
    return { received: true };
  };
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post('/data/webhooks/:companyId', webhook(false));
    scope.post('/data+crypto/webhooks/:companyId', webhook(true));
  });

  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    async stop() {
      await app.close();
      await Promise.all(Object.values(queues).map((q) => q.close()));
      redis.disconnect();
      await data.client.close();
    },
  };
}

/** The product's charge, as data: the same reads and writes, the same two Stripe requests, the same audit insert. */
async function chargeAsData(
  job: Job<{ paymentId: string }>,
  data: Awaited<ReturnType<typeof connectData>>,
  appendEvents: (events: Document[]) => Promise<void>,
  stripeBase: string,
  issueInvoice: (payment: Document) => Promise<Document[]>,
): Promise<void> {
  const { paymentId } = job.data;
  const payments = data.payments as Collection<Document>;
  // Claim first, as the charge worker does: no separate read in the usual case.
  const stored = await payments.findOneAndUpdate(
    { _id: paymentId as never, status: { $in: ['queued', 'processing'] } },
    { $set: { status: 'processing', updatedAt: new Date() }, $inc: { attempts: 1 } },
    { returnDocument: 'after' },
  );
  if (!stored) throw new Error(`no payment ${paymentId} to claim`);
  const companyId = String(stored.companyId);
  // The gateway configuration: the company's (its mode is `company`, so the office's is not read).
  await data.companies.findOne({ _id: companyId as never });
  const stripe = async (path: string, form: Record<string, string>, key: string) => {
    const response = await fetch(`${stripeBase}${path}`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer sk_test_benchStripeMock',
        'content-type': 'application/x-www-form-urlencoded',
        'idempotency-key': key,
      },
      body: new URLSearchParams(form).toString(),
    });
    const body = (await response.json()) as { id: string; status: string };
    if (!response.ok) throw new Error(`stripe ${path} answered ${response.status}`);
    return body;
  };
  const intent = await stripe(
    '/v1/payment_intents',
    {
      amount: String(stored.amount),
      currency: String(stored.currency),
      customer: String(stored.customer),
      payment_method: String(stored.paymentMethod),
      'allowed_payment_method_types[]': 'card',
      'metadata[payment_id]': paymentId,
      'metadata[company_id]': companyId,
    },
    `${paymentId}-create`,
  );
  await payments.updateOne({ _id: paymentId as never }, { $set: { stripePaymentIntentId: intent.id } });
  const confirmed = await stripe(
    `/v1/payment_intents/${intent.id}/confirm`,
    { payment_method: String(stored.paymentMethod) },
    `${paymentId}-confirm`,
  );
  const settled = await payments.findOneAndUpdate(
    { _id: paymentId as never, status: 'processing' },
    { $set: { status: confirmed.status, completedAt: new Date(), updatedAt: new Date() }, $unset: { lastError: 1 } },
    { returnDocument: 'after' },
  );
  if (!settled) throw new Error(`payment ${paymentId} not settled`);
  // The request's and the outcome's events in one insert: requested, succeeded, its invoice's finalized and rendered.
  await appendEvents([
    auditJob(companyId, 'payment.requested', paymentId),
    auditJob(companyId, 'payment.succeeded', paymentId),
    ...(await issueInvoice(settled)),
  ]);
}

/**
 * A succeeded one-off payment's invoice, as the product issues it with the render threads in its process: the payer's
 * reference (its Customer, by the deterministic ciphertext of `cus_…`), the billing and invoice settings together, the
 * number (an insert, the head kept in the process), the PDF rendered and stored, the invoice inserted naming it.
 * Answers its audit events (finalized, rendered) for the outcome's job.
 */
function invoiceAsData(
  data: Awaited<ReturnType<typeof connectData>>,
  replay: ReturnType<typeof createInvoiceReplay>,
  places: ReturnType<typeof replayPlaces>,
) {
  const invoices = data.db.collection<InvoiceRecord>(BASELINE_COLLECTIONS.invoices);
  const numbers = data.db.collection<Document & { _id: string }>(BASELINE_COLLECTIONS.invoiceNumbers);
  return async (payment: Document): Promise<Document[]> => {
    const companyId = String(payment.companyId);
    const key = await data.clientEncryption.encrypt(String(payment.customer), {
      keyAltName: companyKeyAltName(companyId),
      algorithm: ALGORITHMS.deterministic,
    });
    const [customer, billing, settings] = await Promise.all([
      data.db
        .collection('stripe_customers')
        .findOne({ companyId, stripeCustomerKey: key }, { projection: { customerRef: 1 } }),
      data.db.collection('billing_settings').findOne({ _id: companyId as never }, { projection: { timeZone: 1 } }),
      data.db
        .collection('invoice_settings')
        .findOne({ _id: invoiceSettingsId(companyId) as never }, { projection: { timeZone: 1, numberPrefix: 1 } }),
    ]);
    const invoiceId = invoiceIdFor({ type: 'payment', id: String(payment._id) });
    const sequence = places.take(`${companyId}|invoice`, 1);
    await numbers.insertOne({ _id: invoiceId, key: `${companyId}|invoice`, sequence, createdAt: new Date() });
    const issuedAt = payment.completedAt as Date;
    const timeZone = String(billing?.timeZone ?? settings?.timeZone ?? 'UTC');
    const line = serviceLine(payment.serviceCategory as string | undefined);
    const now = new Date();
    const amount = Number(payment.amount);
    let invoice: InvoiceRecord = {
      _id: invoiceId,
      companyId,
      ...(payment.officeId ? { officeId: String(payment.officeId) } : {}),
      kind: 'invoice',
      status: 'paid',
      source: { type: 'payment', id: String(payment._id) },
      settleAs: 'paid',
      customerRef: String(customer?.customerRef ?? payment.customer),
      paymentId: String(payment._id),
      number: formatDocumentNumber(
        'invoice',
        String(settings?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX),
        yearIn(issuedAt, timeZone),
        sequence,
      ),
      sequence,
      currency: String(payment.currency),
      lines: [{ ...line, quantity: 1, unitAmount: amount, amount }],
      subtotal: amount,
      total: amount,
      amountPaid: amount,
      amountDue: 0,
      issuedAt,
      timeZone,
      finalizedAt: now,
      paidAt: issuedAt,
      documentStatus: 'pending',
      createdAt: now,
      updatedAt: now,
    };
    const { document, phiLevel } = await replay.renderNow(invoice);
    invoice = { ...invoice, documentStatus: 'stored', document };
    await invoices.insertOne(invoice);
    return issuedInvoiceEvents({ ...invoice, document }, phiLevel, now);
  };
}

/** Environment of a replay workers process: its slot among `BENCH_REPLAY_SLOTS` replay workers processes (from 0). */
export function replaySlotEnv(slot: number, slots: number): Record<string, string> {
  return { BENCH_REPLAY_SLOT: String(slot), BENCH_REPLAY_SLOTS: String(slots) };
}

/**
 * The places (invoice numbers, audit sequences) a replay workers process takes, from heads it keeps in memory, in
 * blocks of 16 consecutive places (an outcome's audit events are one ordered insert): with n processes, the one in
 * slot i takes blocks i, i+n, i+2n… of each key, so processes never collide under the unique indexes and none reads a
 * head. A lower bound on the product's sequenced inserts (which re-read a head after losing a place to another
 * process); a replay may leave gaps.
 */
export function replayPlaces(env: NodeJS.ProcessEnv): { take(key: string, count: number): number } {
  const slots = Number(env.BENCH_REPLAY_SLOTS ?? 1);
  const slot = Number(env.BENCH_REPLAY_SLOT ?? 0);
  if (!Number.isInteger(slots) || slots < 1 || !Number.isInteger(slot) || slot < 0 || slot >= slots) {
    throw new Error(`replay slot ${String(env.BENCH_REPLAY_SLOT)} of ${String(env.BENCH_REPLAY_SLOTS)} is not valid`);
  }
  const blocks = new Map<string, number>();
  const BLOCK = 16;
  return {
    take(key, count) {
      if (count > BLOCK) throw new Error(`at most ${BLOCK} places at once, asked ${count}`);
      const used = blocks.get(key) ?? 0;
      blocks.set(key, used + 1);
      return (used * slots + slot) * BLOCK + 1;
    },
  };
}

async function startWorkers(config: AppConfig): Promise<{ stop(): Promise<void> }> {
  const data = await connectData(config);
  await data.auditEvents.createIndex({ companyId: 1, sequence: 1 }, { unique: true });
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const producer = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const audit = new Queue(BASELINE_QUEUES.audit, { connection: producer, prefix: config.queuePrefix });
  const pool = createRenderPool({ threads: config.workers.invoiceRenderThreads });
  await data.db.collection(BASELINE_COLLECTIONS.invoiceNumbers).createIndex({ key: 1, sequence: 1 }, { unique: true });
  const places = replayPlaces(process.env);
  const issueInvoice = invoiceAsData(
    data,
    createInvoiceReplay({
      db: data.db,
      clientEncryption: data.clientEncryption,
      pool,
      auditQueue: audit,
      collections: { invoices: BASELINE_COLLECTIONS.invoices, documents: BASELINE_COLLECTIONS.documents },
    }),
    places,
  );
  /** One event, or an outcome's events in one ordered insert (one company's, consecutive places). */
  const appendEvents = async (events: Document[]) => {
    const companyId = String(events[0]!.companyId);
    const first = places.take(`${companyId}|audit`, events.length);
    const recordedAt = new Date();
    try {
      await data.auditEvents.insertMany(
        events.map((event, i) => ({ _id: event.eventId as never, ...event, sequence: first + i, recordedAt })),
        { ordered: true },
      );
    } catch (error) {
      // A repeated event: stored once, like the product.
      if ((error as { code?: number }).code !== 11000) throw error;
    }
  };
  const options = (concurrency: number) => ({ connection, prefix: config.queuePrefix, concurrency });
  const workers = [
    new Worker(BASELINE_QUEUES.noop, async () => undefined, options(config.workers.chargeConcurrency)),
    new Worker(BASELINE_QUEUES.noopAudit, async () => undefined, options(config.workers.auditConcurrency)),
    new Worker<{ paymentId: string }>(
      BASELINE_QUEUES.charges,
      (job) =>
        chargeAsData(job, data, appendEvents, (process.env.STRIPE_API_BASE ?? '').replace(/\/$/, ''), issueInvoice),
      options(config.workers.chargeConcurrency),
    ),
    new Worker<{ companyId: string; eventId: string } | { events: Array<{ companyId: string; eventId: string }> }>(
      BASELINE_QUEUES.audit,
      (job) => appendEvents('events' in job.data ? job.data.events : [job.data]),
      options(config.workers.auditConcurrency),
    ),
    new Worker(BASELINE_QUEUES.stripeEvents, async () => undefined, options(config.workers.chargeConcurrency)),
  ];
  await Promise.all(workers.map((worker) => worker.waitUntilReady()));
  return {
    async stop() {
      await Promise.all(workers.map((worker) => worker.close()));
      await audit.close();
      await pool.close();
      connection.disconnect();
      producer.disconnect();
      await data.client.close();
    },
  };
}

async function main(role: string | undefined): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  let running: { url?: string; stop(): Promise<void> };
  if (role === 'server') running = await startServer(config);
  else if (role === 'workers') running = await startWorkers(config);
  else throw new Error(`role must be "server" or "workers", got ${role}`);
  serveParent({ reset: () => counters.reset(), stats: () => counters.stats() }, () => running.stop());
  announceReady({ url: running.url, pid: process.pid } satisfies BaselineInfo);
}

if (require.main === module) main(process.argv[2]).catch(announceFailure);
