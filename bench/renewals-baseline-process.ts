/**
 * The renewals entry's data-bound baseline: the database, Redis and Stripe work of one settled renewal, done by plain
 * clients (the `mongodb` driver, ioredis, BullMQ, fetch) with no product code on the path, in a process of its own:
 *
 * - `sweep`: reads the due subscriptions' ids through one cursor and adds their renew jobs in batches of 1,000;
 * - a renew job: read the subscription, read its open periods, insert its period, read its saved method, insert the
 *   payment, record the attempt (and its card) on the period, add the charge job (the attempt's event goes with the
 *   charge's);
 * - a charge job: claim the payment, read the company, record the gateway account, create and confirm a
 *   PaymentIntent (two Stripe requests, the intent id saved between), record the outcome; then, as the product's
 *   charge job does since issue 22 in a process serving renewals, record the paid period itself: read the
 *   subscription and its open periods (the payment is the outcome's write's answer); issue the period's invoice
 *   (read the plan once per plan, insert its number, read the number prefix; render its PDF on the pool and store it
 *   encrypted, bench/invoice-replay.ts `renderNow`; insert the invoice numbered, paid and naming its document);
 *   append the payment's requested and succeeded events, the period's paid event and the invoice's `finalized` and
 *   `rendered` in one ordered insert, in the job, as the product's job appends its outcome's events itself;
 *   mark the period paid, move the subscription to the period's end (the write answers the moved subscription);
 * - an audit job (none on this path now, as in the product): one insert (a batch's events in one ordered insert).
 *
 * Like the product's processes it counts its own commands (bench/instrument.ts).
 */
import { Queue, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { ClientEncryption, MongoClient, type Document } from 'mongodb';
import { ulid } from 'ulid';
import { planLine } from '../domain/invoice-catalog';
import { DEFAULT_INVOICE_NUMBER_PREFIX, formatDocumentNumber, invoiceIdFor, yearIn } from '../domain/invoice-number';
import { createRenderPool } from '../documents/render-pool';
import { kmsProvidersFor, localMasterKeyFor } from '../models/encryption';
import { invoiceSettingsId } from '../models/invoice-settings.model';
import type { InvoiceRecord } from '../models/invoice.model';
import { periodId } from '../models/subscription.model';
import { loadConfig } from '../platform/config';
import { chargeJobOptions } from '../queues/charges.queue';
import { announceFailure, announceReady, serveParent } from './child';
import { replaySweep } from './sweep-replay';
import { createInvoiceReplay, issuedInvoiceEvents } from './invoice-replay';
import { installCommandCounters } from './instrument';

export const DATA_RENEWAL_QUEUES = {
  renewals: 'bench-data-renewals',
  charges: 'bench-data-renewal-charges',
  audit: 'bench-data-renewal-audit',
  invoices: 'bench-data-renewal-invoices',
} as const;

export const DATA_RENEWAL_COLLECTIONS = {
  subscriptions: 'data_subscriptions',
  periods: 'data_subscription_periods',
  payments: 'data_renewal_payments',
  savedMethods: 'data_saved_payment_methods',
  auditEvents: 'data_renewal_audit_events',
  invoices: 'data_renewal_invoices',
  invoiceNumbers: 'data_renewal_invoice_numbers',
  documents: 'data_renewal_invoice_documents',
} as const;

type Row = Document & { _id: string };

async function main(): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  const stripeBase = (process.env.STRIPE_API_BASE ?? '').replace(/\/$/, '');
  const kmsProviders = kmsProvidersFor(config.kms, localMasterKeyFor(config.kms, false));
  const keyVaultNamespace = config.keyVaultNamespace;
  const client = await MongoClient.connect(config.mongodbUri, {
    autoEncryption: { keyVaultNamespace, kmsProviders, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
  });
  const clientEncryption = new ClientEncryption(client, { keyVaultNamespace, kmsProviders });
  const db = client.db();
  const pool = createRenderPool({ threads: config.workers.invoiceRenderThreads });
  const subscriptions = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.subscriptions);
  const periods = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.periods);
  const payments = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.payments);
  const savedMethods = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.savedMethods);
  const auditEvents = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.auditEvents);
  const companies = db.collection<Row>('companies');
  const plans = db.collection<Row>('plans');
  const invoiceSettings = db.collection<Row>('invoice_settings');
  const invoices = db.collection<InvoiceRecord>(DATA_RENEWAL_COLLECTIONS.invoices);
  const invoiceNumbers = db.collection<Row>(DATA_RENEWAL_COLLECTIONS.invoiceNumbers);
  await invoiceNumbers.createIndex({ key: 1, sequence: 1 }, { unique: true });

  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const producer = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  const queue = (name: string) => new Queue(name, { connection: producer, prefix: config.queuePrefix });
  const queues = {
    renewals: queue(DATA_RENEWAL_QUEUES.renewals),
    charges: queue(DATA_RENEWAL_QUEUES.charges),
    audit: queue(DATA_RENEWAL_QUEUES.audit),
    invoices: queue(DATA_RENEWAL_QUEUES.invoices),
  };
  const invoiceReplay = createInvoiceReplay({
    db,
    clientEncryption,
    pool,
    auditQueue: queues.audit,
    collections: { invoices: DATA_RENEWAL_COLLECTIONS.invoices, documents: DATA_RENEWAL_COLLECTIONS.documents },
  });
  // Like the product's numbering: the head of each company's sequence kept in the process, one insert per number.
  const heads = new Map<string, number>();
  const categories = new Map<string, string>();
  /**
   * The period's invoice, as the product issues it: number, prefix, render and store, insert (numbered, paid, naming
   * its document). Answers its `finalized` and `rendered` events for the run's audit job.
   */
  const issueInvoice = async (sub: Row, period: Row, payment: Row, paidAt: Date): Promise<Document[]> => {
    const invoiceId = invoiceIdFor({ type: 'subscription_period', id: String(period._id) });
    let category = categories.get(String(sub.planId));
    if (!category) {
      category = String(
        (await plans.findOne({ _id: String(sub.planId) }, { projection: { category: 1 } }))?.category ?? 'membership',
      );
      categories.set(String(sub.planId), category);
    }
    const key = `${sub.companyId}|invoice`;
    const sequence = (heads.get(key) ?? 0) + 1;
    heads.set(key, sequence);
    await invoiceNumbers.insertOne({ _id: invoiceId, key, sequence, createdAt: new Date() });
    const settings = await invoiceSettings.findOne(
      { _id: invoiceSettingsId(String(sub.companyId)) },
      { projection: { numberPrefix: 1 } },
    );
    const line = planLine(category as 'membership', sub.interval);
    const now = new Date();
    let invoice: InvoiceRecord = {
      _id: invoiceId,
      companyId: String(sub.companyId),
      kind: 'invoice',
      status: 'paid',
      source: { type: 'subscription_period', id: String(period._id) },
      settleAs: 'paid',
      customerRef: String(sub.customerRef),
      subscriptionId: sub._id,
      paymentId: String(payment._id),
      number: formatDocumentNumber(
        'invoice',
        String(settings?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX),
        yearIn(paidAt, sub.cycle.timeZone),
        sequence,
      ),
      sequence,
      currency: String(period.currency),
      lines: [{ ...line, quantity: 1, unitAmount: period.amount, amount: period.amount }],
      subtotal: period.amount,
      total: period.amount,
      amountPaid: period.amount,
      amountDue: 0,
      period: { start: period.start, end: period.end },
      ...(period.attemptCard ? { paidWith: { brand: period.attemptCard.brand, last4: period.attemptCard.last4 } } : {}),
      issuedAt: paidAt,
      timeZone: sub.cycle.timeZone,
      finalizedAt: now,
      paidAt,
      documentStatus: 'pending',
      createdAt: now,
      updatedAt: now,
    };
    // Rendered and stored before the invoice's insert, which names the document (the product's workers process
    // has the render threads, so it does this instead of a render job).
    const { document, phiLevel } = await invoiceReplay.renderNow(invoice);
    invoice = { ...invoice, documentStatus: 'stored', document };
    await invoices.insertOne(invoice);
    return issuedInvoiceEvents({ ...invoice, document }, phiLevel, now);
  };
  const auditEvent = (companyId: string, action: string, key: string, resourceId: string) => ({
    eventId: `${action}-${key}`,
    companyId,
    action,
    outcome: 'success',
    actor: { type: 'system', id: 'renewals-worker' },
    resource: { type: 'subscription', id: resourceId },
    occurredAt: new Date().toISOString(),
  });
  /** One event, or a run's events in one ordered insert: the audit job's work, and a run's in its own job. */
  const appendEvents = async (events: Document[]) => {
    const recordedAt = new Date();
    try {
      await auditEvents.insertMany(
        events.map((event) => ({ ...event, _id: String(event.eventId), recordedAt })),
        { ordered: true },
      );
    } catch (error) {
      // A repeated event: stored once, like the product.
      if ((error as { code?: number }).code !== 11000) throw error;
    }
  };

  /**
   * The period's payment succeeded: issue the period's invoice, append `before` (the charge's events, when the
   * charge's job does this) with the period's and the invoice's events in one insert, mark the period paid, move the
   * subscription.
   */
  const settlePeriod = async (sub: Row, period: Row, payment: Row, now: Date, before: Document[]) => {
    const paidEvent = auditEvent(sub.companyId, 'subscription.period_paid', period._id, sub._id);
    await appendEvents([...before, paidEvent, ...(await issueInvoice(sub, period, payment, now))]);
    await periods.updateOne(
      { _id: period._id, status: 'open', paymentId: payment._id },
      { $set: { status: 'paid', paidAt: now, updatedAt: now } },
    );
    await subscriptions.findOneAndUpdate(
      { _id: sub._id, status: sub.status, 'currentPeriod.start': sub.currentPeriod.start, updatedAt: sub.updatedAt },
      {
        $set: { nextBillingAt: period.end, paidThrough: period.end, status: 'active', updatedAt: now },
        $unset: { waitingFor: 1 },
      },
      { returnDocument: 'after' },
    );
  };

  const renew = async (job: Job<{ subscriptionId: string }>) => {
    const now = new Date();
    let sub = await subscriptions.findOne({ _id: job.data.subscriptionId });
    if (!sub || !(sub.nextBillingAt <= now)) return { outcome: 'not_due' };
    if (sub.nextBillingAt.getTime() === sub.currentPeriod.end.getTime()) {
      // As the product at the end of a paid period: known paid from `paidThrough` (read by its id otherwise), then
      // the next period made current, due at its start.
      const { index, start, end } = sub.currentPeriod as { index: number; start: Date; end: Date };
      if (sub.paidThrough?.getTime() !== end.getTime()) {
        const paid = await periods.findOne({ _id: periodId(sub._id, start) });
        if (paid?.status !== 'paid') throw new Error(`period ${periodId(sub._id, start)} is not paid`);
      }
      const next = { index: index + 1, start: end, end: new Date(end.getTime() + (end.getTime() - start.getTime())) };
      sub = await subscriptions.findOneAndUpdate(
        { _id: sub._id, status: sub.status, 'currentPeriod.start': start },
        { $set: { currentPeriod: next, nextBillingAt: next.start, updatedAt: now } },
        { returnDocument: 'after' },
      );
      if (!sub) throw new Error(`subscription ${job.data.subscriptionId} changed while advancing`);
    }
    const id = periodId(sub._id, sub.currentPeriod.start);
    // As the product: with no adjustment listed open, the open records are not read (due at its period's start, the
    // period is inserted first).
    const open =
      sub.openAdjustments?.length === 0
        ? []
        : await periods.find({ subscriptionId: sub._id, status: 'open' }).toArray();
    const period = open.find((row) => row._id === id);
    if (period?.paymentId) {
      const payment = await payments.findOne({ _id: period.paymentId });
      if (payment?.status !== 'succeeded') throw new Error(`payment ${period.paymentId} is ${payment?.status}`);
      await settlePeriod(sub, period, payment, now, []);
      return { outcome: 'settled' };
    }
    // Every renewal here opens a new period (no dunning, no retries): an open one without its payment is a bug.
    if (period) throw new Error(`period ${id} is open without a payment`);
    const method = await savedMethods.findOne({ _id: sub.paymentMethodId, companyId: sub.companyId });
    if (!method) throw new Error(`no saved method ${sub.paymentMethodId}`);
    const attempt = 1;
    const idempotencyKey = `sub:${id}:${attempt}`;
    const payment = {
      _id: `pay_${ulid()}`,
      companyId: sub.companyId,
      idempotencyKey,
      requestHash: idempotencyKey,
      amount: sub.amount,
      currency: sub.currency,
      customer: method.stripeCustomerId,
      paymentMethod: method.stripePaymentMethodId,
      serviceCategory: 'membership',
      status: 'queued',
      // As the product's: the payment records its attempt, from which the charge sends the attempt's event.
      subscription: {
        subscriptionId: sub._id,
        periodId: id,
        attempt: { number: attempt, reason: 'first_attempt', at: now },
      },
      requestedBy: { type: 'service', id: 'renewals-worker' },
      requestId: `req_${sub._id}_${sub.currentPeriod.index}_${attempt}`,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
    };
    // As the product: a new period is inserted with its first attempt recorded, then that attempt's payment.
    await periods.insertOne({
      _id: id,
      companyId: sub.companyId,
      subscriptionId: sub._id,
      index: sub.currentPeriod.index,
      start: sub.currentPeriod.start,
      end: sub.currentPeriod.end,
      amount: sub.amount,
      currency: sub.currency,
      status: 'open',
      attempts: attempt,
      paymentId: payment._id,
      attemptCard: { paymentId: payment._id, brand: method.card.brand, last4: method.card.last4 },
      createdAt: now,
      updatedAt: now,
    });
    await payments.insertOne(payment);
    await queues.charges.add(
      'charge',
      { paymentId: payment._id },
      { ...chargeJobOptions, jobId: `charge-${payment._id}` },
    );
    return { outcome: 'charging' };
  };

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

  const charge = async (job: Job<{ paymentId: string }>) => {
    const { paymentId } = job.data;
    const payment = await payments.findOneAndUpdate(
      { _id: paymentId, status: { $in: ['queued', 'processing'] } },
      { $set: { status: 'processing', updatedAt: new Date() }, $inc: { attempts: 1 } },
      { returnDocument: 'after' },
    );
    if (!payment) throw new Error(`no payment ${paymentId} to claim`);
    const companyId = String(payment.companyId);
    await companies.findOne({ _id: companyId });
    await payments.updateOne(
      { _id: paymentId, gatewayAccount: { $exists: false } },
      { $set: { gatewayAccount: { mode: 'company' } } },
    );
    const intent = await stripe(
      '/v1/payment_intents',
      {
        amount: String(payment.amount),
        currency: String(payment.currency),
        customer: String(payment.customer),
        payment_method: String(payment.paymentMethod),
        'allowed_payment_method_types[]': 'card',
        'metadata[payment_id]': paymentId,
        'metadata[company_id]': companyId,
      },
      `${paymentId}-create`,
    );
    await payments.updateOne({ _id: paymentId }, { $set: { stripePaymentIntentId: intent.id } });
    const confirmed = await stripe(
      `/v1/payment_intents/${intent.id}/confirm`,
      { payment_method: String(payment.paymentMethod) },
      `${paymentId}-confirm`,
    );
    const settled = await payments.findOneAndUpdate(
      { _id: paymentId, status: 'processing' },
      { $set: { status: confirmed.status, completedAt: new Date(), updatedAt: new Date() } },
      { returnDocument: 'after' },
    );
    if (settled?.status !== 'succeeded') throw new Error(`payment ${paymentId} is ${settled?.status}`);
    // The product's charge job records the paid period itself (a renewal run inside it), its events in one batch.
    const sub = await subscriptions.findOne({ _id: settled.subscription.subscriptionId });
    if (!sub) throw new Error(`no subscription for ${paymentId}`);
    const open = await periods.find({ subscriptionId: sub._id, status: 'open' }).toArray();
    const period = open.find((row) => row._id === periodId(sub._id, sub.currentPeriod.start));
    if (!period) throw new Error(`no open period for ${paymentId}`);
    // The payment as the outcome's write returned it, as the product's run takes it (no second read).
    // The attempt's event first, from what the payment records of it (the opening run sends none), as the product's.
    await settlePeriod(sub, period, settled, new Date(), [
      auditEvent(companyId, 'subscription.attempt_started', `${period._id}-${period.attempts}`, sub._id),
      auditEvent(companyId, 'payment.requested', paymentId, paymentId),
      auditEvent(companyId, 'payment.succeeded', paymentId, paymentId),
    ]);
    return { status: settled.status };
  };

  const options = (concurrency: number) => ({ connection, prefix: config.queuePrefix, concurrency });
  const workers = [
    new Worker(DATA_RENEWAL_QUEUES.renewals, renew, options(config.workers.renewalConcurrency)),
    new Worker(DATA_RENEWAL_QUEUES.charges, charge, options(config.workers.chargeConcurrency)),
    new Worker<{ invoiceId: string }>(
      DATA_RENEWAL_QUEUES.invoices,
      (job) => invoiceReplay.renderJob(job.data.invoiceId),
      options(config.workers.invoiceConcurrency),
    ),
    new Worker<Document>(
      DATA_RENEWAL_QUEUES.audit,
      (job) => appendEvents(Array.isArray(job.data.events) ? job.data.events : [job.data]),
      options(config.workers.auditConcurrency),
    ),
  ];
  await Promise.all(workers.map((worker) => worker.waitUntilReady()));

  serveParent(
    {
      reset: () => counters.reset(),
      stats: () => counters.stats(),
      /** The sweep's data: the due subscriptions' ids and periods, and their renew jobs in batches of 1,000. */
      sweep: () => replaySweep(subscriptions, queues.renewals),
    },
    async () => {
      await Promise.all(workers.map((worker) => worker.close()));
      await pool.close();
      await Promise.all(Object.values(queues).map((q) => q.close()));
      connection.disconnect();
      producer.disconnect();
      await client.close();
    },
  );
  announceReady({ pid: process.pid });
}

if (require.main === module) main().catch(announceFailure);
