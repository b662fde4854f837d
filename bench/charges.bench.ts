import { Queue } from 'bullmq';
import type { Collection } from 'mongodb';
import { startApi } from '../api/main';
import { mintDevToken } from '../cli/main';
import { startStripeSim, type StripeSim } from '../devtools/stripe-sim';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { QUEUE_NAMES } from '../queues/names';
import { startWorkers } from '../workers/main';
import { measureNoopBaseline } from './noop-baseline';
import type { BenchEntry, BenchResult } from './report';
import {
  createBenchWorld,
  pollUntil,
  positiveIntFromEnv,
  serviceAddresses,
  withTeardown,
  type BenchWorld,
  type Teardown,
} from './support';
import { timeRequests, type TimedRequests } from './timed-requests';

/**
 * Charges per second through the whole path — POST /v1/companies/:id/payments →
 * BullMQ `charges` → charge worker → Stripe (stripe-sim over stripe-mock: create
 * + confirm PaymentIntent over HTTP) → MongoDB — until every payment is
 * `succeeded`, next to a baseline of as many no-op BullMQ jobs on the same Redis
 * with the charge worker's concurrency. Api, workers and sim run in this process.
 *
 * BENCH_CHARGES (200), BENCH_CLIENT_CONCURRENCY (32), BENCH_WARMUP (20, not timed),
 * BENCH_DEADLINE_MS (100000, per wait); CHARGE_CONCURRENCY and
 * AUDIT_CONCURRENCY are passed to the app config.
 */

interface Settings {
  charges: number;
  clientConcurrency: number;
  warmup: number;
  deadlineMs: number;
}

function settingsFromEnv(): Settings {
  return {
    charges: positiveIntFromEnv('BENCH_CHARGES', 200),
    clientConcurrency: positiveIntFromEnv('BENCH_CLIENT_CONCURRENCY', 32),
    warmup: positiveIntFromEnv('BENCH_WARMUP', 20),
    deadlineMs: positiveIntFromEnv('BENCH_DEADLINE_MS', 100_000),
  };
}

/** App settings a bench run may vary; everything else is fixed by the bench world. */
function passThroughEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['CHARGE_CONCURRENCY', 'AUDIT_CONCURRENCY']) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  return env;
}

type StatusCounts = Record<string, number>;
const STILL_GOING_OR_DONE = ['queued', 'processing', 'succeeded'];

async function statusCounts(payments: Collection): Promise<StatusCounts> {
  const groups = await payments
    .aggregate<{ _id: string; n: number }>([{ $group: { _id: '$status', n: { $sum: 1 } } }])
    .toArray();
  return Object.fromEntries(groups.map((g) => [g._id, g.n]));
}

/** A payment that ended anywhere but `succeeded` makes the run fail: the number would be meaningless. */
async function refuseUnsuccessful(payments: Collection, counts: StatusCounts): Promise<void> {
  const bad = Object.entries(counts)
    .filter(([status]) => !STILL_GOING_OR_DONE.includes(status))
    .reduce((sum, [, n]) => sum + n, 0);
  if (bad === 0) return;
  const examples = await payments
    .find({ status: { $nin: STILL_GOING_OR_DONE } }, { projection: { status: 1, failure: 1 } })
    .limit(3)
    .toArray();
  throw new Error(
    `${bad} payment(s) did not succeed, e.g. ${JSON.stringify(examples)}; counts ${JSON.stringify(counts)}`,
  );
}

interface WholePath {
  seconds: number;
  /** The timed POSTs: how long until all were answered, and their latencies. */
  posts: TimedRequests;
  stripeRequestsPerPayment: number;
  /** Audit jobs not yet done when every payment had succeeded: work the whole-path time does not include. */
  auditBacklog: number;
}

/** Jobs of a queue still to do (waiting, active, delayed), read without taking part in the work. */
async function pendingJobs(world: BenchWorld, queueName: string): Promise<number> {
  const queue = new Queue(queueName, { connection: world.redis, prefix: world.config.queuePrefix });
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  } finally {
    await queue.close();
  }
}

async function measureWholePath(
  world: BenchWorld,
  settings: Settings,
  sim: StripeSim,
  teardown: Teardown,
): Promise<WholePath> {
  const { config, logger } = world;
  const seedDb = await openDatabase(config);
  let companyId: string;
  try {
    companyId = await createCompany(seedDb, {
      name: 'Bench Family Practice',
      stripeSecretKey: 'sk_test_benchStripeMock',
      compliance: devAttestation('bench'),
    });
  } finally {
    await seedDb.close();
  }
  const token = await mintDevToken(config, { companyId, roles: ['service'] });

  const workers = await startWorkers(config, logger);
  teardown.defer('stop the workers', () => workers.stop());
  const api = await startApi(config, logger);
  teardown.defer('stop the api', () => api.stop());
  // Like a load balancer: no traffic before the api says it can reach Redis and MongoDB.
  await pollUntil(
    async () => {
      const response = await fetch(`${api.url}/readyz`);
      await response.arrayBuffer();
      return response.status;
    },
    (status) => status === 200,
    { timeoutMs: 15_000, what: 'the api to be ready' },
  );

  // fetch (undici) keeps connections alive by default; at most clientConcurrency of them.
  const endpoint = `${api.url}/v1/companies/${companyId}/payments`;
  const post = (idempotencyKey: string, amount: number): Promise<Response> =>
    fetch(endpoint, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'idempotency-key': idempotencyKey,
      },
      body: JSON.stringify({ amount, currency: 'usd', customer: 'cus_BenchPatient', paymentMethod: 'pm_card_visa' }),
    });

  const payments = world.rawMongo.db(world.dbName).collection('payments');
  // Counting by status is a collection scan on a MongoDB-wire server without that index (FerretDB: 40+ ms
  // at 500 payments), so it polls seldom; the timed end comes from completedAt, not from when the poll saw it.
  const waitForSucceeded = (expected: number, what: string, intervalMs: number) =>
    pollUntil(
      async () => {
        const counts = await statusCounts(payments);
        await refuseUnsuccessful(payments, counts);
        return counts;
      },
      (counts) => (counts.succeeded ?? 0) >= expected,
      { timeoutMs: settings.deadlineMs, intervalMs, what },
    );

  const send = (count: number, tag: string) =>
    timeRequests(count, settings.clientConcurrency, 202, (i) =>
      post(`bench-${world.suffix}-${tag}-${i}`, 1_000 + (i % 9_000)),
    );

  // Warm-up (not timed): connections, JIT, the company's data key and Stripe client get made here.
  await send(settings.warmup, 'warmup');
  await waitForSucceeded(settings.warmup, `${settings.warmup} warm-up payments to succeed`, 200);

  const startedAt = Date.now();
  const posts = await send(settings.charges, 'timed');
  try {
    await waitForSucceeded(settings.warmup + settings.charges, `${settings.charges} payments to succeed`, 2_000);
  } catch (error) {
    // Still a failure, but with the rate so far: the reason it timed out is usually that rate.
    const done = Math.max(0, ((await statusCounts(payments)).succeeded ?? 0) - settings.warmup);
    const seconds = (Date.now() - startedAt) / 1000;
    throw new Error(
      `${(error as Error).message}\n  ${done} of ${settings.charges} succeeded in ${seconds.toFixed(0)} s ` +
        `(${(done / seconds).toFixed(1)}/s); lower BENCH_CHARGES or raise BENCH_DEADLINE_MS to finish`,
      { cause: error },
    );
  }
  const auditBacklog = await pendingJobs(world, QUEUE_NAMES.audit);
  // The end is when the last payment was settled, not when the poll noticed.
  const last = await payments
    .find({}, { projection: { completedAt: 1 } })
    .sort({ completedAt: -1 })
    .limit(1)
    .next();
  const completedAt = last?.completedAt instanceof Date ? last.completedAt.getTime() : Date.now();

  return {
    seconds: (completedAt - startedAt) / 1000,
    posts,
    stripeRequestsPerPayment: sim.requests.length / (settings.warmup + settings.charges),
    auditBacklog,
  };
}

export const chargesBench: BenchEntry = {
  name: 'charges',
  unit: 'jobs',
  run(): Promise<BenchResult> {
    const settings = settingsFromEnv();
    const services = serviceAddresses();
    return withTeardown(async (teardown) => {
      const sim = await startStripeSim({ upstreamUrl: services.stripeApiBase });
      teardown.defer('close the stripe-sim', () => sim.close());
      const world = await createBenchWorld('charges', services, { STRIPE_API_BASE: sim.url, ...passThroughEnv() });
      teardown.defer('clean up the bench world', () => world.close());

      // The baseline first, while nothing else uses this prefix.
      const baselineSeconds = await measureNoopBaseline(world, {
        jobs: settings.charges,
        warmup: settings.warmup,
        producerConcurrency: settings.clientConcurrency,
        workerConcurrency: world.config.workers.chargeConcurrency,
        deadlineMs: settings.deadlineMs,
      });
      const whole = await measureWholePath(world, settings, sim, teardown);

      const wholeRate = settings.charges / whole.seconds;
      const baselineRate = settings.charges / baselineSeconds;
      const ms = (value: number) => `${value.toFixed(1)} ms`;
      return {
        summary:
          `${settings.charges} payments (pm_card_visa, +${settings.warmup} untimed warm-up), ` +
          `client concurrency ${settings.clientConcurrency}, charge worker concurrency ${world.config.workers.chargeConcurrency}`,
        throughput: [
          { label: 'whole path (POST → succeeded in MongoDB)', count: settings.charges, seconds: whole.seconds },
          { label: 'baseline (no-op BullMQ jobs)', count: settings.charges, seconds: baselineSeconds },
        ],
        metrics: [
          {
            label: 'ratio whole path / baseline',
            value: `${(wholeRate / baselineRate).toFixed(3)} (throughput; baseline is ${(baselineRate / wholeRate).toFixed(1)}x faster)`,
          },
          {
            label: 'POST latency p50 / p99',
            value: `${ms(whole.posts.p50Ms)} / ${ms(whole.posts.p99Ms)}`,
          },
          { label: 'all POSTs answered (202) after', value: `${whole.posts.seconds.toFixed(2)} s` },
          { label: 'Stripe requests per payment', value: whole.stripeRequestsPerPayment.toFixed(2) },
          { label: 'audit jobs still pending at the end', value: String(whole.auditBacklog) },
        ],
      };
    });
  },
};
