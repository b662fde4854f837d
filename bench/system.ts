/**
 * The parent's side of a measured run: the product's processes (api, workers),
 * the baseline processes and the load generator, each a child of its own, and
 * the per-operation numbers read from them.
 */
import { QueueEvents } from 'bullmq';
import { startChild, type Child } from './child';
import { total, type ProcessStats } from './instrument';
import type { LoadResult, LoadSpec } from './load-process';
import type { ProductInfo, ProductRole } from './product-process';
import type { BaselineInfo } from './baseline-process';
import { positiveIntFromEnv, type BenchWorld, type Teardown } from './support';
import { withDeadline } from '../platform/deadline';

export type Counted = Child<{ pid: number }>;

/** BENCH_CPU_PROF_DIR=dir: the product's processes and their replays write V8 CPU profiles there when they stop. */
function profilingArgv(): string[] {
  const dir = process.env.BENCH_CPU_PROF_DIR;
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

function childEnv(world: BenchWorld, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // PATH and friends from the bench, the service addresses and everything else from the world.
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !/^(BENCH_|REDIS_URL$|MONGODB_URI$|STRIPE_API_BASE$)/.test(name)),
  );
  return { ...inherited, ...world.env, ...extra };
}

export async function startProduct(
  world: BenchWorld,
  teardown: Teardown,
  role: ProductRole,
  extraEnv: Record<string, string> = {},
  /** After the role: for workers, `['--queues', 'invoices']` serves only those queues. */
  args: string[] = [],
): Promise<Child<ProductInfo>> {
  const child = await startChild<ProductInfo>('product-process', {
    args: [role, ...args],
    env: childEnv(world, extraEnv),
    execArgv: profilingArgv(),
  });
  teardown.defer(`stop the product ${role} process`, () => child.stop());
  return child;
}

export async function startBaselines(
  world: BenchWorld,
  teardown: Teardown,
  role: 'server' | 'workers',
  extraEnv: Record<string, string> = {},
): Promise<Child<BaselineInfo>> {
  const child = await startChild<BaselineInfo>('baseline-process', {
    args: [role],
    env: childEnv(world, extraEnv),
    execArgv: profilingArgv(),
  });
  teardown.defer(`stop the baseline ${role} process`, () => child.stop());
  return child;
}

export interface LoadGenerator {
  run(spec: LoadSpec): Promise<LoadResult>;
}

export async function startLoadGenerator(teardown: Teardown): Promise<LoadGenerator> {
  const child = await startChild<{ pid: number }>('load-process');
  teardown.defer('stop the load generator', () => child.stop());
  return { run: (spec) => child.request<LoadResult>('run', spec) };
}

export interface ClientSettings {
  connections: number;
  /** Untimed operations before each measured run. */
  warmup: number;
  /**
   * Untimed requests to each HTTP target before the request entries' measured runs: enough for V8 to optimize the
   * hot paths of every process alike (with 50, the product ran its first measured requests in code not yet optimized).
   */
  httpWarmup: number;
  /** How long the bare-route limit runs (it answers thousands per second: a count would be over at once). */
  limitSeconds: number;
  /**
   * The measured operations are split into this many rounds, data-bound then product in turn (the request entries
   * alternate the order, `inTurn`), so a neighbour's load that comes and goes on a shared machine falls on both alike.
   */
  rounds: number;
}

export function clientSettings(): ClientSettings {
  return {
    connections: positiveIntFromEnv('BENCH_CLIENT_CONCURRENCY', 32),
    warmup: positiveIntFromEnv('BENCH_WARMUP', 50),
    httpWarmup: positiveIntFromEnv('BENCH_HTTP_WARMUP', 1_000),
    limitSeconds: positiveIntFromEnv('BENCH_LIMIT_SECONDS', 3),
    rounds: positiveIntFromEnv('BENCH_ROUNDS', 2),
  };
}

/** `items` in `rounds` consecutive parts of (nearly) equal size. */
export function splitIntoRounds<T>(items: T[], rounds: number): T[][] {
  const size = Math.ceil(items.length / rounds);
  const parts: T[][] = [];
  for (let start = 0; start < items.length; start += size) parts.push(items.slice(start, start + size));
  return parts;
}

/** Seconds and latency of rounds run one after another: seconds add up; p50 is the mean, p99 the worst round's. */
export function combineRounds(runs: Array<{ seconds: number; p50Ms: number; p99Ms: number }>) {
  return {
    seconds: runs.reduce((sum, run) => sum + run.seconds, 0),
    p50Ms: runs.reduce((sum, run) => sum + run.p50Ms, 0) / runs.length,
    p99Ms: Math.max(...runs.map((run) => run.p99Ms)),
  };
}

/**
 * The order a round runs its measurements in: as given in even rounds, reversed in odd ones, so whatever one run
 * leaves behind for the next (the database still writing out its inserts, a collection grown) falls on each alike.
 */
export function inTurn<T>(turns: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...turns] : [...turns].reverse();
}

export async function resetCounters(children: Counted[]): Promise<void> {
  await Promise.all(children.map((child) => child.request('reset')));
}

/** Per-process statistics, by the label given. */
export async function readStats(children: Record<string, Counted>): Promise<Record<string, ProcessStats>> {
  const entries = await Promise.all(
    Object.entries(children).map(
      async ([label, child]) => [label, await child.request<ProcessStats>('stats')] as const,
    ),
  );
  return Object.fromEntries(entries);
}

export interface PerOp {
  mongoCommandsPerOp: number;
  redisCommandsPerOp: number;
  cpuMsPerOp: number;
  /** Largest resident set of the processes, at the end. */
  rssMb: number;
  /** Largest resident set once the processes have been idle for `BENCH_SETTLE_SECONDS` (see `settle`). */
  settledRssMb?: number;
  processes: Record<
    string,
    {
      cpuMsPerOp: number;
      rssMb: number;
      settledRssMb?: number;
      /** How much RSS grew over the measured operations, and the JS heap in use at the end. */
      rssGrowthMb: number;
      heapUsedMb: number;
      mongoCommandsPerOp: number;
      redisCommandsPerOp: number;
    }
  >;
  /** Commands per operation by name, summed over the processes ("insert payments": 1). */
  commands: { mongo: Record<string, number>; redis: Record<string, number> };
}

const round = (value: number, digits = 2) => Number(value.toFixed(digits));

export function perOp(stats: Record<string, ProcessStats>, ops: number): PerOp {
  const all = Object.values(stats);
  const byName = (pick: (s: ProcessStats) => Record<string, number>) => {
    const sums: Record<string, number> = {};
    for (const s of all) for (const [name, n] of Object.entries(pick(s))) sums[name] = (sums[name] ?? 0) + n;
    return Object.fromEntries(
      Object.entries(sums)
        .sort(([, a], [, b]) => b - a)
        .map(([name, n]) => [name, round(n / ops, 3)]),
    );
  };
  return {
    mongoCommandsPerOp: round(all.reduce((sum, s) => sum + total(s.mongo), 0) / ops),
    redisCommandsPerOp: round(all.reduce((sum, s) => sum + total(s.redis), 0) / ops),
    cpuMsPerOp: round(all.reduce((sum, s) => sum + s.cpuMs, 0) / ops),
    rssMb: round(Math.max(...all.map((s) => s.rssMb)), 1),
    processes: Object.fromEntries(
      Object.entries(stats).map(([label, s]) => [
        label,
        {
          cpuMsPerOp: round(s.cpuMs / ops),
          rssMb: round(s.rssMb, 1),
          rssGrowthMb: round(s.rssMb - s.rssAtResetMb, 1),
          heapUsedMb: round(s.heapUsedMb, 1),
          mongoCommandsPerOp: round(total(s.mongo) / ops),
          redisCommandsPerOp: round(total(s.redis) / ops),
        },
      ]),
    ),
    commands: { mongo: byName((s) => s.mongo), redis: byName((s) => s.redis) },
  };
}

/**
 * `BENCH_SETTLE_SECONDS` (unset: skipped). After an entry's operations, and after its per-operation numbers are read,
 * every process of the entry stays idle this long; then each one's RSS is read again, into `settledRssMb`. What a
 * process holds at the end of a burst (`rssMb`) includes what V8 keeps for the next one — its young generation, the
 * old space's free pages — and gives back by itself once the process has been idle for about a minute (its memory
 * reducer). One wait covers every run given.
 */
export async function settle(runs: Array<{ perOp: PerOp; children: Record<string, Counted> }>): Promise<void> {
  if (!process.env.BENCH_SETTLE_SECONDS) return;
  const seconds = positiveIntFromEnv('BENCH_SETTLE_SECONDS', 1);
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  for (const { perOp, children } of runs) {
    const stats = await readStats(children);
    for (const [label, s] of Object.entries(stats)) {
      const processStats = perOp.processes[label];
      if (processStats) processStats.settledRssMb = round(s.rssMb, 1);
    }
    perOp.settledRssMb = round(Math.max(...Object.values(stats).map((s) => s.rssMb)), 1);
  }
}

/**
 * Counts `completed` events of one queue, from the bench's own connection (it
 * reads the events stream; the processes measured do no extra work for it).
 * `until(n)` resolves with the epoch ms of the n-th completion since `start()`.
 */
export async function completionCounter(world: BenchWorld, teardown: Teardown, queueName: string) {
  const events = new QueueEvents(queueName, {
    connection: world.redis.duplicate(),
    prefix: world.config.queuePrefix,
  });
  teardown.defer(`close the ${queueName} events listener`, () => events.close());
  await events.waitUntilReady();
  let completed = 0;
  let failed = 0;
  let waiter: { target: number; resolve: (at: number) => void } | undefined;
  events.on('completed', () => {
    completed += 1;
    if (waiter && completed >= waiter.target) waiter.resolve(Date.now());
  });
  events.on('failed', ({ failedReason }) => {
    failed += 1;
    world.logger.warn({ queue: queueName, failedReason }, 'bench: job attempt failed');
  });
  return {
    get completed() {
      return completed;
    },
    get failed() {
      return failed;
    },
    until(target: number, deadlineMs: number): Promise<number> {
      if (completed >= target) return Promise.resolve(Date.now());
      return withDeadline(
        new Promise<number>((resolve) => (waiter = { target, resolve })),
        deadlineMs,
        `${target} ${queueName} jobs to complete (${completed} so far)`,
      );
    },
  };
}
