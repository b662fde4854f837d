import { Queue } from 'bullmq';
import { ulid } from 'ulid';
import { invoicePayment, type IssueInvoiceDeps } from '../application/invoices/issue-invoice';
import { openDatabase, type Database } from '../models';
import { createCompany } from '../models/companies';
import { invoiceSettingsId } from '../models/invoice-settings.model';
import type { PaymentRecord } from '../models/payment.model';
import { payerProfileId } from '../models/payer-profile.model';
import { INVOICE_JOB_NAME, invoiceJobId, invoiceJobOptions } from '../queues/invoices.queue';
import { QUEUE_NAMES } from '../queues/names';
import { startChild, type Child } from './child';
import type { BareRenderResult } from './invoices-bare-process';
import { DATA_INVOICE_COLLECTIONS, DATA_INVOICE_QUEUES } from './invoices-baseline-process';
import { payerAccount } from '../application/invoices/render-invoice';
import { invoiceViewOf } from './invoices-view';
import { entryResult, type BenchEntry, type EntryResult, dataBoundBaseline } from './report';
import {
  createBenchWorld,
  positiveIntFromEnv,
  runBounded,
  serviceAddresses,
  withTeardown,
  type BenchWorld,
  type Teardown,
} from './support';
import {
  clientSettings,
  completionCounter,
  perOp,
  readStats,
  resetCounters,
  settle,
  splitIntoRounds,
  startProduct,
} from './system';

/** `--quick` (BENCH_QUICK=1): sizes for a smoke run. */
function sizes() {
  const quick = process.env.BENCH_QUICK === '1';
  return {
    invoices: positiveIntFromEnv('BENCH_INVOICES', quick ? 200 : 1_000),
    companies: positiveIntFromEnv('BENCH_INVOICES_COMPANIES', 4),
    payersPerCompany: positiveIntFromEnv('BENCH_INVOICES_PAYERS', 25),
  };
}

/** Like system.ts's: the bench's PATH and friends, the world's services and settings. */
function childEnv(world: BenchWorld): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(BENCH_|REDIS_URL$|MONGODB_URI$|STRIPE_API_BASE$)/.test(name)),
  );
  return { ...inherited, ...world.env };
}

async function startOwnChild<Info>(world: BenchWorld, teardown: Teardown, script: string): Promise<Child<Info>> {
  const child = await startChild<Info>(script, { env: childEnv(world) });
  teardown.defer(`stop ${script}`, () => child.stop());
  return child;
}

/**
 * Companies with invoice settings at the `standard` PHI level (letterhead, prefix) and payer profiles (name, address,
 * email, encrypted as the api stores them), then `count` paid one-off payments invoiced by `invoicePayment`: finalized
 * and numbered, documents pending. Nothing is queued (the measured runs queue the renders); the ids in issue order.
 */
async function seedInvoices(
  world: BenchWorld,
  db: Database,
  size: ReturnType<typeof sizes>,
  count: number,
): Promise<string[]> {
  const companies: string[] = [];
  for (let c = 0; c < size.companies; c += 1) {
    const companyId = await createCompany(db, { name: `Bench Family Practice ${c}` });
    companies.push(companyId);
    await db.models.InvoiceSettings.updateOne(
      { _id: invoiceSettingsId(companyId) },
      {
        $set: {
          companyId,
          numberPrefix: `BFP${c}`,
          phiLevel: 'standard',
          letterhead: {
            name: `Bench Family Practice ${c}`,
            address: [`${100 + c} Main Street, Suite 200`, 'Springfield, IL 62701'],
          },
          requireDownloadReason: false,
          updatedBy: { type: 'service', id: 'svc-bench' },
        },
      },
      { upsert: true },
    );
    for (let p = 0; p < size.payersPerCompany; p += 1) {
      const customerRef = `cus_BenchPayer${String(p).padStart(4, '0')}`;
      const [name, billingAddress, email] = await Promise.all([
        db.encryption.encrypt(companyId, `Jordan Payer ${p}`),
        db.encryption.encrypt(companyId, JSON.stringify([`${40 + p} Elm Street`, 'Springfield, IL 62702'])),
        db.encryption.encrypt(companyId, `payer${p}@example.com`),
      ]);
      await db.models.PayerProfile.updateOne(
        { _id: payerProfileId(companyId, customerRef) },
        {
          $set: {
            companyId,
            customerRef,
            name,
            billingAddress,
            email,
            updatedBy: { type: 'service', id: 'svc-bench' },
          },
        },
        { upsert: true },
      );
    }
  }
  const deps: IssueInvoiceDeps = {
    models: db.models,
    numbering: db.invoiceNumbering,
    enqueueAudit: async () => undefined,
    enqueueRender: async () => undefined,
    logger: world.logger,
  };
  const ids: string[] = new Array<string>(count);
  const paidAt = new Date();
  await runBounded(count, 2 * size.companies, async (i) => {
    const payment = {
      _id: `pay_${ulid()}`,
      companyId: companies[i % companies.length]!,
      status: 'succeeded',
      amount: 12_345,
      currency: 'usd',
      customer: `cus_BenchPayer${String(Math.floor(i / companies.length) % size.payersPerCompany).padStart(4, '0')}`,
      paymentMethod: 'pm_card_visa',
      serviceCategory: 'office_visit',
      completedAt: paidAt,
      createdAt: paidAt,
      updatedAt: paidAt,
    } as PaymentRecord;
    const invoice = await invoicePayment(deps, payment);
    if (!invoice || invoice.status !== 'paid' || invoice.documentStatus !== 'pending') {
      throw new Error(`payment ${payment._id}: no paid invoice with its document pending`);
    }
    ids[i] = invoice._id;
  });
  return ids;
}

/** Render jobs exactly as `enqueueInvoiceRender` adds them (name, options, job id), in batches of 1,000. */
async function addRenderJobs(queue: Queue, ids: string[]): Promise<void> {
  for (let start = 0; start < ids.length; start += 1_000) {
    await queue.addBulk(
      ids.slice(start, start + 1_000).map((invoiceId) => ({
        name: INVOICE_JOB_NAME,
        data: { invoiceId },
        opts: { ...invoiceJobOptions, jobId: invoiceJobId(invoiceId) },
      })),
    );
  }
}

/** `_id` → document.sha256 of every stored document in a collection of invoices. */
async function storedHashes(world: BenchWorld, collection: string): Promise<Map<string, string>> {
  const rows = await world.rawMongo
    .db(world.dbName)
    .collection<{ _id: string; document?: { sha256: string } }>(collection)
    .find({ documentStatus: 'stored' }, { projection: { 'document.sha256': 1 } })
    .toArray();
  return new Map(rows.map((row) => [row._id, String(row.document?.sha256)]));
}

/**
 * `npm run bench -- invoices` (issue 14): PDFs rendered and stored per second by the real invoices worker (a workers
 * process started with `--queues invoices`: the render pool of INVOICE_RENDER_THREADS threads, INVOICE_CONCURRENCY
 * jobs at a time), for BENCH_INVOICES invoices made up front by `invoicePayment` (paid, numbered, `standard` PHI level
 * with a payer profile, documents pending), timed from the render jobs' add to the last stored document. Baselines,
 * each in a process of its own, in the same rounds: the limit, bare PDFKit (the same render pool rendering the same
 * view, no database); the data-bound replay, the same reads, decryption, encryption, writes and job adds from plain
 * clients, rendering through the same pool. Both must produce the product's bytes (SHA-256), or the run fails.
 */
export const invoicesBench: BenchEntry = {
  name: 'invoices',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const size = sizes();
      const settings = clientSettings();
      const deadlineMs = positiveIntFromEnv('BENCH_DEADLINE_MS', 180_000);
      const pass: Record<string, string> = {};
      for (const name of ['INVOICE_RENDER_THREADS', 'INVOICE_CONCURRENCY']) {
        if (process.env[name]) pass[name] = process.env[name]!;
      }
      const world = await createBenchWorld('invoices', serviceAddresses(), pass);
      teardown.defer('clean up the bench world', () => world.close());
      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());
      const { invoiceRenderThreads: threads, invoiceConcurrency: concurrency } = world.config.workers;

      const total = size.invoices + settings.warmup;
      const seededAt = Date.now();
      const ids = await seedInvoices(world, db, size, total);
      // The replay's own copies (it writes to them); settings, profiles, companies and keys are shared reads.
      const mongo = world.rawMongo.db(world.dbName);
      const rows = await mongo.collection('invoices').find({}).toArray();
      await mongo.collection(DATA_INVOICE_COLLECTIONS.invoices).insertMany(rows, { ordered: false });
      await mongo.collection(DATA_INVOICE_COLLECTIONS.invoices).createIndex({ documentStatus: 1, updatedAt: 1 });
      process.stderr.write(
        `bench: invoices: ${total} invoices issued over ${size.companies} companies (${(Date.now() - seededAt) / 1000} s)\n`,
      );

      // The page of the first invoice, built from the product's own reads (payer profile decrypted).
      const first = (await db.models.Invoice.findById(ids[0]).lean())!;
      const view = invoiceViewOf({
        invoice: first,
        companyName: String((await db.models.Company.findById(first.companyId, { name: 1 }).lean())?.name),
        account: await payerAccount(db, first.companyId, first.customerRef),
        settings: await db.models.InvoiceSettings.findById(invoiceSettingsId(first.companyId)).lean(),
        profile: await db.models.PayerProfile.findById(payerProfileId(first.companyId, first.customerRef), {
          name: 1,
          billingAddress: 1,
        }).lean(),
      });

      const [workers, data, bare] = await Promise.all([
        startProduct(world, teardown, 'workers', {}, ['--queues', QUEUE_NAMES.invoices]),
        startOwnChild<{ pid: number }>(world, teardown, 'invoices-baseline-process'),
        startOwnChild<{ pid: number }>(world, teardown, 'invoices-bare-process'),
      ]);
      const queues = {
        product: new Queue(QUEUE_NAMES.invoices, { connection: world.redis, prefix: world.config.queuePrefix }),
        data: new Queue(DATA_INVOICE_QUEUES.invoices, { connection: world.redis, prefix: world.config.queuePrefix }),
      };
      teardown.defer('close the invoice queues', async () => {
        await Promise.all([queues.product.close(), queues.data.close()]);
      });
      const counters = {
        product: await completionCounter(world, teardown, QUEUE_NAMES.invoices),
        data: await completionCounter(world, teardown, DATA_INVOICE_QUEUES.invoices),
      };
      const drive = async (which: 'product' | 'data', batch: string[]) => {
        const before = counters[which].completed;
        const startedAt = Date.now();
        await addRenderJobs(queues[which], batch);
        const doneAt = await counters[which].until(before + batch.length, deadlineMs);
        return (doneAt - startedAt) / 1000;
      };
      const inFlight = Math.max(concurrency, 2 * threads);
      let bareResult: BareRenderResult | undefined;
      const round = async (batch: string[]) => {
        bareResult = await bare.request<BareRenderResult>('render', { view, n: batch.length, inFlight });
        const dataSeconds = await drive('data', batch);
        const productSeconds = await drive('product', batch);
        return { bareSeconds: bareResult.seconds, dataSeconds, productSeconds };
      };

      await round(ids.slice(0, settings.warmup));
      await resetCounters([workers, data, bare]);
      const seconds = { bare: 0, data: 0, product: 0 };
      for (const batch of splitIntoRounds(ids.slice(settings.warmup), settings.rounds)) {
        const r = await round(batch);
        seconds.bare += r.bareSeconds;
        seconds.data += r.dataSeconds;
        seconds.product += r.productSeconds;
        process.stderr.write(
          `bench: invoices: round of ${batch.length}: bare ${r.bareSeconds.toFixed(2)} s, ` +
            `data-bound ${r.dataSeconds.toFixed(2)} s, product ${r.productSeconds.toFixed(2)} s\n`,
        );
      }
      const productPerOp = perOp(await readStats({ workers }), size.invoices);
      const dataPerOp = perOp(await readStats({ 'data workers': data }), size.invoices);
      const barePerOp = perOp(await readStats({ 'bare render': bare }), size.invoices);
      await settle([
        { perOp: productPerOp, children: { workers } },
        { perOp: dataPerOp, children: { 'data workers': data } },
        { perOp: barePerOp, children: { 'bare render': bare } },
      ]);

      // What was measured is what it claims: every document stored, no attempt failed, the same bytes everywhere.
      if (counters.product.failed > 0 || counters.data.failed > 0) {
        throw new Error(`failed attempts: product ${counters.product.failed}, data-bound ${counters.data.failed}`);
      }
      const product = await storedHashes(world, 'invoices');
      const replay = await storedHashes(world, DATA_INVOICE_COLLECTIONS.invoices);
      if (product.size !== total || replay.size !== total) {
        throw new Error(`stored documents: product ${product.size}, data-bound ${replay.size}, of ${total}`);
      }
      const differing = ids.filter((id) => product.get(id) !== replay.get(id));
      if (differing.length > 0) {
        throw new Error(`${differing.length} data-bound PDFs differ from the product's (first ${differing[0]})`);
      }
      const lastBare = bareResult;
      if (!lastBare || lastBare.sha256 !== product.get(ids[0]!)) {
        throw new Error(`the bare render's page is not the product's (${ids[0]})`);
      }
      const storedDocuments = await mongo.collection('invoice_documents').countDocuments();
      if (storedDocuments !== total) throw new Error(`${storedDocuments} stored documents, ${total} expected`);

      const result = entryResult({
        name: 'invoices',
        summary:
          `${size.invoices} paid invoices (standard PHI level, payer profile) rendered and stored, ${lastBare.bytes} B ` +
          `each; 1 workers process serving only the invoices queue, concurrency ${concurrency}, ` +
          `${threads} render threads; ${size.companies} companies`,
        unit: 'PDFs',
        ops: size.invoices,
        seconds: seconds.product,
        p50Ms: null,
        p99Ms: null,
        baselines: {
          limit: {
            what: `bare PDFKit: the same view on the same pool (${threads} threads), ${inFlight} in flight, no DB`,
            perSecond: size.invoices / seconds.bare,
            cpuMsPerOp: barePerOp.cpuMsPerOp,
            processes: barePerOp.processes,
          },
          dataBound: dataBoundBaseline(
            'same reads, decryption, encryption, writes and job adds, plain clients, same pool',
            size.invoices / seconds.data,
            dataPerOp,
          ),
        },
        perOp: productPerOp,
      });
      return Object.assign(result, {
        renderThreads: threads,
        invoiceConcurrency: concurrency,
        pdfBytes: lastBare.bytes,
      });
    }),
};
