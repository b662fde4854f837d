import { Queue, QueueEvents } from 'bullmq';
import { ulid } from 'ulid';
import type { Collection, Document } from 'mongodb';
import { deleteKeysByPrefix } from '../devtools/redis-keys';
import { pollUntil } from '../devtools/polling';
import { startStripeSim } from '../devtools/stripe-sim';
import { openDatabase, type Database } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { savedPaymentMethodId } from '../models/saved-payment-method.model';
import { periodId } from '../models/subscription.model';
import { withDeadline } from '../platform/deadline';
import { QUEUE_NAMES } from '../queues/names';
import { RENEWAL_JOBS } from '../queues/renewals.queue';
import { BASELINE_QUEUES } from './baseline-process';
import { startChild, type Child } from './child';
import { waitForDrained } from './charges.bench';
import { DATA_RENEWAL_COLLECTIONS, DATA_RENEWAL_QUEUES } from './renewals-baseline-process';
import type { EnqueueMeasurement } from './renewals-sweep-process';
import { entryResult, type BenchEntry, type EntryResult, dataBoundBaseline } from './report';
import {
  createBenchWorld,
  positiveIntFromEnv,
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
  startBaselines,
  startProduct,
} from './system';

const DAY = 24 * 60 * 60 * 1000;

/** `--quick` (BENCH_QUICK=1): sizes for a smoke run. */
function sizes() {
  const quick = process.env.BENCH_QUICK === '1';
  const due = positiveIntFromEnv('BENCH_RENEWALS_DUE', quick ? 5_000 : 100_000);
  return {
    due,
    dueSmall: positiveIntFromEnv('BENCH_RENEWALS_DUE_SMALL', Math.max(1, Math.round(due / 10))),
    companies: positiveIntFromEnv('BENCH_RENEWALS_COMPANIES', 10),
    settled: positiveIntFromEnv('BENCH_RENEWALS_SETTLED', quick ? 200 : 1_000),
    at: dueWhere(),
  };
}

type DueAt = 'period_start' | 'period_end';

/**
 * Where part 2's renewals are due (BENCH_RENEWALS_AT): at a period's start (`period_start`, the default: a first
 * payment, a resume's new cycle), or at the end of a paid one (`period_end`: a monthly plan's steady state, the next
 * period made current and opened).
 */
function dueWhere(): DueAt {
  const at = process.env.BENCH_RENEWALS_AT ?? 'period_start';
  if (at !== 'period_start' && at !== 'period_end') {
    throw new Error(`BENCH_RENEWALS_AT must be period_start or period_end, got ${at}`);
  }
  return at;
}

/** Like system.ts's: the bench's PATH and friends, the world's services and settings. */
function childEnv(world: BenchWorld): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(BENCH_|REDIS_URL$|MONGODB_URI$|STRIPE_API_BASE$)/.test(name)),
  );
  return { ...inherited, ...world.env };
}

async function startOwnChild<Info>(world: BenchWorld, teardown: Teardown, script: string): Promise<Child<Info>> {
  const child = await startChild<Info>(script, { env: childEnv(world), execArgv: ['--expose-gc'] });
  teardown.defer(`stop ${script}`, () => child.stop());
  return child;
}

/** A subscription row as the api stores it, due at `dueAt` (its period starts then). */
function subscriptionRow(companyId: string, paymentMethodId: string, dueAt: Date, i: number) {
  return {
    _id: `sub_${ulid()}`,
    companyId,
    planId: 'plan_bench',
    customerRef: `payer-${i}`,
    paymentMethodId,
    status: 'active',
    amount: 3_000,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    cycle: { anchor: dueAt, timeZone: 'UTC' },
    currentPeriod: { index: 0, start: dueAt, end: new Date(dueAt.getTime() + 30 * DAY) },
    nextBillingAt: dueAt,
    cancelAtPeriodEnd: false,
    openAdjustments: [],
    idempotencyKey: `bench-${ulid()}`,
    requestHash: 'bench',
    requestedBy: { type: 'service', id: 'svc-bench' },
    requestId: 'req_bench',
    createdAt: dueAt,
    updatedAt: dueAt,
  };
}

/** The paid period record of a subscription row due at its end, as a renewal leaves it. */
function paidPeriodRow(sub: ReturnType<typeof subscriptionRow>, start: Date, end: Date) {
  return {
    _id: periodId(sub._id, start),
    companyId: sub.companyId,
    subscriptionId: sub._id,
    index: 0,
    start,
    end,
    amount: sub.amount,
    currency: sub.currency,
    status: 'paid',
    attempts: 1,
    paymentId: `pay_${ulid()}`,
    paidAt: start,
    createdAt: start,
    updatedAt: start,
  };
}

async function insertInBatches(collection: Collection<Document>, rows: Document[]): Promise<void> {
  for (let start = 0; start < rows.length; start += 1_000) {
    await collection.insertMany(rows.slice(start, start + 1_000), { ordered: false });
  }
}

/**
 * Completions of a charges queue whose return value says the payment succeeded, counted from the bench's own
 * connection: the charge's job records the paid period (a renewal run inside it), so each is a settled renewal (the
 * paid periods are counted again at the end).
 */
async function settledCounter(world: BenchWorld, teardown: Teardown, queueName: string) {
  const events = new QueueEvents(queueName, { connection: world.redis.duplicate(), prefix: world.config.queuePrefix });
  teardown.defer(`close the ${queueName} events listener`, () => events.close());
  await events.waitUntilReady();
  let settled = 0;
  let waiter: { target: number; resolve: (at: number) => void } | undefined;
  events.on('completed', ({ returnvalue }) => {
    const value = (typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue) as { status?: string };
    if (value?.status !== 'succeeded') return;
    settled += 1;
    if (waiter && settled >= waiter.target) waiter.resolve(Date.now());
  });
  events.on('failed', ({ failedReason }) =>
    world.logger.warn({ queue: queueName, failedReason }, 'bench: renewal attempt failed'),
  );
  return {
    get settled() {
      return settled;
    },
    until(target: number, deadlineMs: number): Promise<number> {
      if (settled >= target) return Promise.resolve(Date.now());
      return withDeadline(
        new Promise<number>((resolve) => (waiter = { target, resolve })),
        deadlineMs,
        `${target} ${queueName} charges of renewals to settle (${settled} so far)`,
      );
    },
  };
}

interface EnqueueRun {
  due: number;
  sweep: EnqueueMeasurement;
  addBulk: EnqueueMeasurement;
  /** The same reads and adds from plain clients (bench/renewals-sweep-process.ts `replay`). */
  replay: EnqueueMeasurement;
  /** addBulk seconds / sweep seconds: 1 means the sweep enqueues as fast as bare addBulk. */
  ratio: number;
  /** replay seconds / sweep seconds: 1 means the sweep costs what its reads and adds cost. */
  ratioToDataBound: number;
}

/**
 * Part 1: the sweep of `due` subscriptions due at one instant, then of `dueSmall`, each in a fresh child process (its
 * peak RSS), next to addBulk of as many no-op jobs in a fresh child on a fresh queue prefix.
 */
async function measureEnqueue(
  world: BenchWorld,
  teardown: Teardown,
  db: Database,
  size: ReturnType<typeof sizes>,
): Promise<EnqueueRun[]> {
  const subscriptions = world.rawMongo.db(world.dbName).collection('subscriptions');
  const renewals = new Queue(QUEUE_NAMES.renewals, { connection: world.redis, prefix: world.config.queuePrefix });
  teardown.defer('close the renewals queue', () => renewals.close());
  const dueAt = new Date(Date.now() - 60_000);
  const runs: EnqueueRun[] = [];
  let inserted = 0;
  for (const due of [size.dueSmall, size.due]) {
    const started = Date.now();
    const rows = [];
    for (let i = inserted; i < due; i += 1) {
      rows.push(subscriptionRow(`co_bench_${i % size.companies}`, `spm_${'a'.repeat(32)}`, dueAt, i));
    }
    await insertInBatches(subscriptions, rows);
    inserted = due;
    // One untimed pass over what the sweep reads, so neither the product nor its replay pays for the first scan of
    // rows just inserted (PostgreSQL under FerretDB writes their hint bits then): the first measured reader was the
    // sweep, which then took about twice its replay's time at 5,000 and 100,000 due.
    let scanned = 0;
    for await (const row of subscriptions.find({ nextBillingAt: { $lte: new Date() } }, { projection: { _id: 1 } })) {
      if (row) scanned += 1;
    }
    if (scanned < due) throw new Error(`${scanned} due subscriptions read back, ${due} inserted`);
    process.stderr.write(`bench: renewals: ${due} due subscriptions in place (${(Date.now() - started) / 1000} s)\n`);

    const noopPrefix = `${world.config.queuePrefix}-noop-${due}`;
    teardown.defer(
      'delete the no-op renewal jobs',
      async () => void (await deleteKeysByPrefix(world.redis, noopPrefix)),
    );
    const limitChild = await startOwnChild<{ pid: number }>(world, teardown, 'renewals-sweep-process');
    const addBulk = await limitChild.request<EnqueueMeasurement>('addbulk', { n: due, prefix: noopPrefix });
    await limitChild.stop();
    await deleteKeysByPrefix(world.redis, noopPrefix);

    const sweepChild = await startOwnChild<{ pid: number }>(world, teardown, 'renewals-sweep-process');
    const sweep = await sweepChild.request<EnqueueMeasurement>('sweep');
    await sweepChild.stop();
    if (sweep.enqueued !== due) throw new Error(`the sweep queued ${sweep.enqueued} renewals of ${due} due`);
    const waiting = await renewals.getJobCountByTypes('waiting', 'prioritized');
    if (waiting !== due) throw new Error(`${waiting} renewal jobs waiting after the sweep, ${due} expected`);
    await renewals.obliterate({ force: true });
    // After the sweep: whatever FerretDB keeps warm from the first read helps the replay, not the product.
    const replayPrefix = `${world.config.queuePrefix}-replay-${due}`;
    teardown.defer(
      'delete the replayed renewal jobs',
      async () => void (await deleteKeysByPrefix(world.redis, replayPrefix)),
    );
    const replayChild = await startOwnChild<{ pid: number }>(world, teardown, 'renewals-sweep-process');
    const replay = await replayChild.request<EnqueueMeasurement>('replay', { prefix: replayPrefix });
    await replayChild.stop();
    await deleteKeysByPrefix(world.redis, replayPrefix);
    if (replay.enqueued !== due) throw new Error(`the replay queued ${replay.enqueued} renewals of ${due} due`);

    const run = {
      due,
      sweep,
      addBulk,
      replay,
      ratio: Number((addBulk.seconds / sweep.seconds).toFixed(3)),
      ratioToDataBound: Number((replay.seconds / sweep.seconds).toFixed(3)),
    };
    process.stderr.write(
      `bench: renewals: ${due} due: sweep ${sweep.seconds.toFixed(2)} s (peak RSS ${sweep.maxRssMb} MB), ` +
        `replay ${replay.seconds.toFixed(2)} s (peak RSS ${replay.maxRssMb} MB), ` +
        `addBulk ${addBulk.seconds.toFixed(2)} s (peak RSS ${addBulk.maxRssMb} MB), ` +
        `×${run.ratioToDataBound} replay, ×${run.ratio} addBulk\n`,
    );
    runs.push(run);
  }
  // Out of the way of part 2 (the workers' own sweep would find them); the indexes come back with the model's.
  await subscriptions.drop();
  await db.models.Subscription.createIndexes();
  return runs.sort((a, b) => a.due - b.due);
}

/** Companies able to take payments, each payer with a saved card: product rows, and plain copies for the replay. */
async function seedSettled(world: BenchWorld, db: Database, count: number, companyCount: number, at: DueAt) {
  const companies: Array<{ companyId: string; customer: unknown; card: unknown }> = [];
  for (let c = 0; c < companyCount; c += 1) {
    const companyId = await createCompany(db, {
      name: `Bench Practice ${c}`,
      stripeSecretKey: 'sk_test_benchStripeMock',
      compliance: devAttestation('bench'),
    });
    // One ciphertext per company, shared by its payers: encrypting is not what is measured.
    companies.push({
      companyId,
      customer: await db.encryption.encrypt(companyId, 'cus_BenchPayer01'),
      card: await db.encryption.encrypt(companyId, 'pm_card_visa'),
    });
  }
  const mongo = world.rawMongo.db(world.dbName);
  return async (offset: number, n: number) => {
    const dueAt = new Date(Date.now() - 60_000);
    const methods: Document[] = [];
    const plainMethods: Document[] = [];
    const subs: Document[] = [];
    const plainSubs: Document[] = [];
    const paid: Document[] = [];
    for (let i = offset; i < offset + n; i += 1) {
      const { companyId, customer, card } = companies[i % companies.length]!;
      const id = savedPaymentMethodId(companyId, `seti_${ulid()}`);
      const method = {
        _id: id,
        companyId,
        customerRef: `payer-${i}`,
        usage: 'off_session',
        status: 'active',
        card: { brand: 'visa', last4: '4242', expMonth: 12, expYear: 2030 },
        savedBy: `bench-${i}`,
        createdAt: dueAt,
        updatedAt: dueAt,
      };
      methods.push({ ...method, stripeCustomerId: customer, stripePaymentMethodId: card });
      plainMethods.push({ ...method, stripeCustomerId: 'cus_BenchPayer01', stripePaymentMethodId: 'pm_card_visa' });
      const sub = subscriptionRow(companyId, id, dueAt, i);
      if (at === 'period_end') {
        // A month paid, ending now: its period recorded paid, and the subscription saying so (`paidThrough`).
        const start = new Date(dueAt);
        start.setUTCMonth(start.getUTCMonth() - 1);
        Object.assign(sub, {
          cycle: { anchor: start, timeZone: 'UTC' },
          currentPeriod: { index: 0, start, end: dueAt },
          paidThrough: dueAt,
          createdAt: start,
        });
        paid.push(paidPeriodRow(sub, start, dueAt));
      }
      subs.push(sub);
      plainSubs.push({ ...sub });
    }
    if (paid.length > 0) {
      await insertInBatches(mongo.collection('subscription_periods'), paid);
      await insertInBatches(mongo.collection(DATA_RENEWAL_COLLECTIONS.periods), paid);
    }
    await insertInBatches(mongo.collection('saved_payment_methods'), methods);
    await insertInBatches(mongo.collection(DATA_RENEWAL_COLLECTIONS.savedMethods), plainMethods);
    await insertInBatches(mongo.collection('subscriptions'), subs);
    await insertInBatches(mongo.collection(DATA_RENEWAL_COLLECTIONS.subscriptions), plainSubs);
  };
}

async function countStoredInvoices(world: BenchWorld, collection: string): Promise<number> {
  return world.rawMongo
    .db(world.dbName)
    .collection(collection)
    .countDocuments({ status: 'paid', documentStatus: 'stored', number: { $exists: true } });
}

async function countPaid(world: BenchWorld, collection: string): Promise<number> {
  return world.rawMongo.db(world.dbName).collection(collection).countDocuments({ status: 'paid' });
}

/**
 * `npm run bench -- renewals` (issues 13 and 22). Part 1, enqueue: `sweepRenewals` over BENCH_RENEWALS_DUE subscriptions
 * due at the same instant (spread over BENCH_RENEWALS_COMPANIES companies), in a child process of its own, against its
 * data-bound replay (the same query through the plain driver's cursor, the same ranks, `addBulk` of each 1,000) and
 * `addBulk` of as many no-op jobs (batches of 1,000, fresh queue prefix), each in another: the ratios, and the peak RSS
 * at BENCH_RENEWALS_DUE_SMALL and BENCH_RENEWALS_DUE. Part 2, settled: BENCH_RENEWALS_SETTLED renewals through the real
 * workers process (renew → charge via stripe-sim over stripe-mock, whose job records the paid period and issues its
 * invoice, rendered and stored; audits appended), timed from the sweep job's add until every renewal settled and the
 * invoices and audit queues drained; data-bound baseline: the same commands, Stripe requests and invoice render from
 * plain clients in a process of their own; limit: 2 no-op jobs per renewal (renew, charge) through a no-op worker.
 */
export const renewalsBench: BenchEntry = {
  name: 'renewals',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const size = sizes();
      const settings = clientSettings();
      const deadlineMs = positiveIntFromEnv('BENCH_DEADLINE_MS', 180_000);
      const services = serviceAddresses();
      const sim = await startStripeSim({ upstreamUrl: services.stripeApiBase });
      teardown.defer('close the stripe-sim', () => sim.close());
      // The workers' scheduled sweep runs once at start-up; the bench starts every measured sweep itself.
      const world = await createBenchWorld('renewals', services, {
        STRIPE_API_BASE: sim.url,
        RENEWAL_SWEEP_EVERY_MS: String(24 * 60 * 60 * 1000),
      });
      teardown.defer('clean up the bench world', () => world.close());
      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());

      const enqueue = await measureEnqueue(world, teardown, db, size);

      // Part 2.
      const insertSettled = await seedSettled(world, db, size.settled + settings.warmup, 4, size.at);
      // The third: the baseline workers process, for its no-op worker (the limit).
      const [workers, data] = await Promise.all([
        startProduct(world, teardown, 'workers'),
        startOwnChild<{ pid: number }>(world, teardown, 'renewals-baseline-process'),
        startBaselines(world, teardown, 'workers'),
      ]);
      const renewals = new Queue(QUEUE_NAMES.renewals, { connection: world.redis, prefix: world.config.queuePrefix });
      teardown.defer('close the renewals queue', () => renewals.close());
      // The start-up sweep is done before anything is due, so every measured renewal is queued by a measured sweep.
      await pollUntil(
        () => renewals.getJobCountByTypes('completed'),
        (n) => n >= 1,
        { timeoutMs: 30_000, intervalMs: 100, what: "the workers' start-up sweep" },
      );
      const counters = {
        product: await settledCounter(world, teardown, QUEUE_NAMES.charges),
        data: await settledCounter(world, teardown, DATA_RENEWAL_QUEUES.charges),
        limit: await completionCounter(world, teardown, BASELINE_QUEUES.noop),
      };
      let offset = 0;
      let sweeps = 0;
      const drive = async (which: 'product' | 'data', n: number) => {
        const before = counters[which].settled;
        const startedAt = Date.now();
        if (which === 'product') {
          await renewals.add(RENEWAL_JOBS.sweep, {}, { jobId: `bench-sweep-${(sweeps += 1)}` });
        } else {
          await data.request('sweep');
        }
        await counters[which].until(before + n, deadlineMs);
        // Each paid period's invoice is rendered and stored, and every audit event appended, before the next round.
        const [invoices, audit] =
          which === 'product'
            ? [QUEUE_NAMES.invoices, QUEUE_NAMES.audit]
            : [DATA_RENEWAL_QUEUES.invoices, DATA_RENEWAL_QUEUES.audit];
        await waitForDrained(world, invoices, deadlineMs);
        await waitForDrained(world, audit, deadlineMs);
        return (Date.now() - startedAt) / 1000;
      };
      const round = async (n: number) => {
        await insertSettled(offset, n);
        offset += n;
        const dataSeconds = await drive('data', n);
        const productSeconds = await drive('product', n);
        return { dataSeconds, productSeconds };
      };
      await round(settings.warmup);
      await resetCounters([workers, data]);
      let dataSeconds = 0;
      let seconds = 0;
      const perRound = Math.ceil(size.settled / settings.rounds);
      for (let done = 0; done < size.settled; done += perRound) {
        const r = await round(Math.min(perRound, size.settled - done));
        dataSeconds += r.dataSeconds;
        seconds += r.productSeconds;
      }
      const productPerOp = perOp(await readStats({ workers }), size.settled);
      const dataPerOp = perOp(await readStats({ 'data workers': data }), size.settled);
      await settle([
        { perOp: productPerOp, children: { workers } },
        { perOp: dataPerOp, children: { 'data workers': data } },
      ]);

      // The limit: the two jobs of a renewal, as no-op jobs, through a no-op worker.
      const noopQueue = new Queue(BASELINE_QUEUES.noop, { connection: world.redis, prefix: world.config.queuePrefix });
      teardown.defer('close the no-op queue', () => noopQueue.close());
      const limitJobs = 2 * size.settled;
      const limitStarted = Date.now();
      for (let start = 0; start < limitJobs; start += 1_000) {
        const n = Math.min(1_000, limitJobs - start);
        await noopQueue.addBulk(Array.from({ length: n }, (_, i) => ({ name: 'noop', data: { i: start + i } })));
      }
      const limitSeconds = ((await counters.limit.until(limitJobs, deadlineMs)) - limitStarted) / 1000;

      const total = size.settled + settings.warmup;
      // Due at a period's end, each subscription's seeded month is a paid period too.
      const expected = size.at === 'period_end' ? 2 * total : total;
      const paid = {
        product: await countPaid(world, 'subscription_periods'),
        data: await countPaid(world, DATA_RENEWAL_COLLECTIONS.periods),
      };
      if (paid.product !== expected || paid.data !== expected) {
        throw new Error(`paid periods: product ${paid.product}, data-bound ${paid.data}, of ${expected}`);
      }
      // Every paid period's invoice issued, numbered and its PDF stored, in both.
      const storedInvoices = {
        product: await countStoredInvoices(world, 'invoices'),
        data: await countStoredInvoices(world, DATA_RENEWAL_COLLECTIONS.invoices),
      };
      if (storedInvoices.product !== total || storedInvoices.data !== total) {
        throw new Error(
          `paid invoices stored: product ${storedInvoices.product}, data-bound ${storedInvoices.data}, of ${total}`,
        );
      }
      // Both paths charge through the same sim: half its requests are the product's.
      const stripeRequests = sim.requests.length / (2 * total);
      const [small, large] = [enqueue[0]!, enqueue.at(-1)!];
      const result = entryResult({
        name: 'renewals',
        summary:
          `${size.settled} renewals settled, due at ${size.at === 'period_end' ? "a paid period's end" : "a period's start"} ` +
          `(renew → charge, ${stripeRequests.toFixed(1)} Stripe requests each → period paid), ` +
          `1 worker process, renewal concurrency ${world.config.workers.renewalConcurrency}; ` +
          `enqueue: sweep of ${large.due} due over ${size.companies} companies ${large.sweep.seconds.toFixed(1)} s vs its ` +
          `replay ${large.replay.seconds.toFixed(1)} s (×${large.ratioToDataBound}) and addBulk ` +
          `${large.addBulk.seconds.toFixed(1)} s (×${large.ratio}); sweep peak RSS ${small.sweep.maxRssMb} MB at ${small.due}, ` +
          `${large.sweep.maxRssMb} MB at ${large.due}`,
        unit: 'renewals',
        ops: size.settled,
        seconds,
        p50Ms: null,
        p99Ms: null,
        baselines: {
          limit: { what: '2 no-op jobs per renewal, no-op worker', perSecond: size.settled / limitSeconds },
          dataBound: dataBoundBaseline(
            'same MongoDB + Redis commands and Stripe calls, plain clients',
            size.settled / dataSeconds,
            dataPerOp,
          ),
        },
        perOp: productPerOp,
      });
      return Object.assign(result, {
        enqueue: {
          what: 'sweepRenewals (own process) vs Queue.addBulk of as many no-op jobs in batches of 1,000 (own process, fresh prefix)',
          companies: size.companies,
          runs: enqueue,
          ratio: large.ratio,
          ratioToDataBound: large.ratioToDataBound,
        },
      });
    }),
};
