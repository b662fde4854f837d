import { Queue } from 'bullmq';
import type { Collection } from 'mongodb';
import { startStripeSim } from '../devtools/stripe-sim';
import { pollUntil } from '../devtools/polling';
import { QUEUE_NAMES } from '../queues/names';
import { BASELINE_COLLECTIONS, BASELINE_QUEUES, replaySlotEnv } from './baseline-process';
import { postSpec } from './http-entry';
import type { LoadVariant } from './load-process';
import { entryResult, type BenchEntry, type EntryResult, dataBoundBaseline } from './report';
import { PAYMENT_BODY, seedPayingCompany } from './requests.bench';
import { createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown, type BenchWorld } from './support';
import {
  clientSettings,
  combineRounds,
  completionCounter,
  perOp,
  readStats,
  resetCounters,
  settle,
  startBaselines,
  startLoadGenerator,
  startProduct,
  splitIntoRounds,
  type Counted,
} from './system';

/** App settings a bench run may vary; everything else is fixed by the bench world. */
function passThroughEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ['CHARGE_CONCURRENCY', 'AUDIT_CONCURRENCY']) {
    const value = process.env[name];
    if (value) env[name] = value;
  }
  return env;
}

/** Jobs of a queue still to do (waiting, active, delayed), read without taking part in the work. */
export async function pendingJobs(world: BenchWorld, queueName: string): Promise<number> {
  const queue = new Queue(queueName, { connection: world.redis, prefix: world.config.queuePrefix });
  try {
    const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return Object.values(counts).reduce((sum, n) => sum + n, 0);
  } finally {
    await queue.close();
  }
}

export function waitForDrained(world: BenchWorld, queueName: string, timeoutMs: number): Promise<number> {
  return pollUntil(
    () => pendingJobs(world, queueName),
    (pending) => pending === 0,
    { timeoutMs, intervalMs: 100, what: `the ${queueName} queue to drain` },
  );
}

/** A payment that ended anywhere but `succeeded` makes the run fail: the number would be meaningless. */
async function refuseUnsuccessful(payments: Collection, expected: number, what: string): Promise<void> {
  const groups = await payments
    .aggregate<{ _id: string; n: number }>([{ $group: { _id: '$status', n: { $sum: 1 } } }])
    .toArray();
  const counts = Object.fromEntries(groups.map((g) => [g._id, g.n]));
  if (counts.succeeded !== expected) {
    throw new Error(
      `${what}: ${counts.succeeded ?? 0} of ${expected} payments succeeded; counts ${JSON.stringify(counts)}`,
    );
  }
}

/**
 * Charges per second through the whole path, with `workerProcesses` worker
 * processes: POST /v1/companies/:id/payments (api process) → BullMQ `charges` →
 * charge worker → Stripe (stripe-sim over stripe-mock: create + confirm) →
 * MongoDB, timed from the first POST to the last charge job completed; the
 * statistics are read once the audit appends of those charges are done too, so
 * the worker CPU per charge includes them. Baselines, same load generator and
 * concurrency: the data-bound path (plain clients replaying the route's and the
 * workers' MongoDB and Redis commands and the two Stripe requests, the same
 * number of worker processes) and the limit (a route that adds one no-op job,
 * a worker that does nothing).
 *
 * BENCH_CHARGES (500), BENCH_CLIENT_CONCURRENCY (32), BENCH_WARMUP (50), BENCH_ROUNDS (2), BENCH_DEADLINE_MS (180000);
 * CHARGE_CONCURRENCY and AUDIT_CONCURRENCY are passed to the app config.
 */
function chargesEntry(name: string, workerProcesses: number): BenchEntry {
  return {
    name,
    run: () =>
      withTeardown(async (teardown): Promise<EntryResult> => {
        const ops = positiveIntFromEnv('BENCH_CHARGES', 500);
        const deadlineMs = positiveIntFromEnv('BENCH_DEADLINE_MS', 180_000);
        const settings = clientSettings();
        const services = serviceAddresses();
        const sim = await startStripeSim({ upstreamUrl: services.stripeApiBase });
        teardown.defer('close the stripe-sim', () => sim.close());
        const world = await createBenchWorld(name, services, { STRIPE_API_BASE: sim.url, ...passThroughEnv() });
        teardown.defer('clean up the bench world', () => world.close());
        const { companyId, token } = await seedPayingCompany(world);

        const times = <T>(n: number, start: (i: number) => Promise<T>) =>
          Promise.all(Array.from({ length: n }, (_, i) => start(i)));
        const [api, workers, server, baselineWorkers, load] = await Promise.all([
          startProduct(world, teardown, 'api'),
          times(workerProcesses, () => startProduct(world, teardown, 'workers')),
          startBaselines(world, teardown, 'server'),
          times(workerProcesses, (i) => startBaselines(world, teardown, 'workers', replaySlotEnv(i, workerProcesses))),
          startLoadGenerator(teardown),
        ]);
        const counters = {
          product: await completionCounter(world, teardown, QUEUE_NAMES.charges),
          data: await completionCounter(world, teardown, BASELINE_QUEUES.charges),
          limit: await completionCounter(world, teardown, BASELINE_QUEUES.noop),
        };

        const variants: LoadVariant[] = Array.from({ length: ops + settings.warmup }, (_, i) => ({
          body: PAYMENT_BODY,
          headers: { 'idempotency-key': `bench-${world.suffix}-${i}` },
        }));
        const json = { 'content-type': 'application/json' };
        const targets = {
          product: {
            url: `${api.info.url}/v1/companies/${companyId}/payments`,
            headers: { ...json, authorization: `Bearer ${token}` },
            audit: QUEUE_NAMES.audit,
          },
          data: { url: `${server.info.url}/data/payments/${companyId}`, headers: json, audit: BASELINE_QUEUES.audit },
          limit: { url: `${server.info.url}/noop/payments/${companyId}`, headers: json, audit: undefined },
        };
        /** POSTs `part`, waits for as many charges; seconds from the first POST to the last completion. */
        const drive = async (which: keyof typeof targets, part: LoadVariant[]) => {
          const target = targets[which];
          const before = counters[which].completed;
          const posted = await load.run(postSpec({ ...target, expectStatus: 202 }, part, settings.connections));
          const doneAt = await counters[which].until(before + part.length, deadlineMs);
          if (target.audit) await waitForDrained(world, target.audit, deadlineMs);
          return { ...posted, seconds: (doneAt - posted.startedAt) / 1000 };
        };

        const warm = variants.slice(ops);
        const measured = variants.slice(0, ops);
        for (const which of ['product', 'data', 'limit'] as const) await drive(which, warm);

        const limit = await drive('limit', measured);
        const dataProcesses: Record<string, Counted> = { 'data api': server };
        baselineWorkers.forEach((child, i) => (dataProcesses[`data workers ${i + 1}`] = child));
        const productProcesses: Record<string, Counted> = { api };
        workers.forEach(
          (child, i) => (productProcesses[workerProcesses === 1 ? 'workers' : `workers ${i + 1}`] = child),
        );
        await resetCounters([...Object.values(dataProcesses), ...Object.values(productProcesses)]);
        const dataRuns = [];
        const productRuns = [];
        for (const part of splitIntoRounds(measured, settings.rounds)) {
          dataRuns.push(await drive('data', part));
          productRuns.push(await drive('product', part));
        }
        const dataPerOp = perOp(await readStats(dataProcesses), ops);
        const productPerOp = perOp(await readStats(productProcesses), ops);
        await settle([
          { perOp: productPerOp, children: productProcesses },
          { perOp: dataPerOp, children: dataProcesses },
        ]);
        const data = combineRounds(dataRuns);
        const product = combineRounds(productRuns);

        const db = world.rawMongo.db(world.dbName);
        await refuseUnsuccessful(db.collection('payments'), ops + settings.warmup, 'product');
        await refuseUnsuccessful(db.collection(BASELINE_COLLECTIONS.payments), ops + settings.warmup, 'data-bound');
        const stripeRequests = sim.requests.length / (2 * (ops + settings.warmup));

        return entryResult({
          name,
          summary:
            `${ops} charges end to end (pm_card_visa, ${stripeRequests.toFixed(1)} Stripe requests each), ` +
            `${settings.connections} connections, ${workerProcesses} worker process${workerProcesses === 1 ? '' : 'es'}, ` +
            `charge concurrency ${world.config.workers.chargeConcurrency}, audit ${world.config.workers.auditConcurrency}`,
          unit: 'charges',
          ops,
          seconds: product.seconds,
          p50Ms: product.p50Ms,
          p99Ms: product.p99Ms,
          baselines: {
            limit: {
              what: 'route adding a no-op job, no-op worker',
              perSecond: ops / limit.seconds,
              p99Ms: limit.p99Ms,
            },
            dataBound: dataBoundBaseline(
              'same MongoDB + Redis commands and Stripe calls, plain clients',
              ops / data.seconds,
              dataPerOp,
              data.p99Ms,
            ),
          },
          perOp: productPerOp,
        });
      }),
  };
}

export const chargesBench = chargesEntry('charges', 1);
export const chargesTwoWorkersBench = chargesEntry('charges-2w', 2);
export const chargesFourWorkersBench = chargesEntry('charges-4w', 4);

/** Worker processes of a charges entry, from its name (`charges` 1, `charges-2w` 2, …); undefined for other entries. */
export function chargeWorkerProcesses(name: string): number | undefined {
  if (name === 'charges') return 1;
  const match = /^charges-(\d+)w$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

export interface ScalingRow {
  workerProcesses: number;
  perSecond: number;
  dataBoundPerSecond: number;
  /** Throughput over the 1-process entry's, and that over the number of processes (1 = perfect scaling). */
  speedup: number;
  efficiency: number;
  dataBoundEfficiency: number;
}

/**
 * Charges with 1, 2, 4 worker processes side by side (the entries that ran): throughput, speedup over one process and
 * efficiency (speedup / processes), for the product and its data-bound replay. On a machine with few cores the
 * processes share them with the api, the database and the load generator, so efficiency says how far adding workers
 * helps here, not what more machines would give.
 */
export function chargesScaling(results: readonly EntryResult[]): ScalingRow[] {
  const rows = results
    .map((result) => ({ result, n: chargeWorkerProcesses(result.name) }))
    .filter((row): row is { result: EntryResult; n: number } => row.n !== undefined)
    .sort((a, b) => a.n - b.n);
  const one = rows.find((row) => row.n === 1);
  if (!one || rows.length < 2) return [];
  const base = one.result.perSecond;
  const dataBase = one.result.baselines.dataBound.perSecond;
  return rows.map(({ result, n }) => {
    const speedup = result.perSecond / base;
    return {
      workerProcesses: n,
      perSecond: Number(result.perSecond.toFixed(1)),
      dataBoundPerSecond: Number(result.baselines.dataBound.perSecond.toFixed(1)),
      speedup: Number(speedup.toFixed(2)),
      efficiency: Number((speedup / n).toFixed(2)),
      dataBoundEfficiency: Number((result.baselines.dataBound.perSecond / dataBase / n).toFixed(2)),
    };
  });
}

export function formatScaling(rows: readonly ScalingRow[]): string {
  const lines = ['charges scaling (worker processes: charges/s, speedup over 1, efficiency; data-bound efficiency)'];
  for (const row of rows) {
    lines.push(
      `  ${row.workerProcesses}: ${row.perSecond}/s, ${row.speedup}x, efficiency ${row.efficiency}` +
        ` (data-bound ${row.dataBoundPerSecond}/s, efficiency ${row.dataBoundEfficiency})`,
    );
  }
  return lines.join('\n');
}
