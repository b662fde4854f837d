/**
 * The shape shared by the request entries (payments POST, webhooks): the same
 * load generator, at the same concurrency, drives the product's api process, the
 * data-bound route, the data-bound route with the product's cryptography and the
 * bare route, one after another in one run.
 */
import type { Child } from './child';
import type { LoadResult, LoadSpec, LoadVariant } from './load-process';
import { entryResult, type Baseline, type EntryResult, dataBoundBaseline } from './report';
import {
  combineRounds,
  type Counted,
  inTurn,
  perOp,
  readStats,
  resetCounters,
  settle,
  splitIntoRounds,
  type ClientSettings,
  type LoadGenerator,
  type PerOp,
} from './system';

export interface HttpTarget {
  url: string;
  headers: Record<string, string>;
  expectStatus: number;
}

export interface HttpMeasurement {
  product: { seconds: number; p50Ms: number; p99Ms: number; perOp: PerOp };
  dataBound: Baseline;
  /** The data-bound replay plus the product's cryptography. */
  withCrypto: Baseline;
  limit: Baseline;
}

/** Each variant POSTed once to `target` over `connections` connections. */
export function postSpec(target: HttpTarget, part: LoadVariant[], connections: number): LoadSpec {
  return {
    url: target.url,
    method: 'POST',
    connections,
    amount: part.length,
    headers: target.headers,
    variants: part,
    expectStatus: target.expectStatus,
  };
}

/**
 * Variants `[0, ops)` are the measured requests, `[ops, ops + warmup)` warm each
 * target up (JIT, pools, data keys) untimed. The measured requests run in rounds,
 * each target in turn (`inTurn`). The limit runs last, for a fixed time with the
 * same requests, cycled.
 */
export async function measureHttp(options: {
  load: LoadGenerator;
  settings: ClientSettings;
  ops: number;
  variants: LoadVariant[];
  product: HttpTarget & { process: Child<{ pid: number }>; label: string };
  dataBound: HttpTarget & { process: Child<{ pid: number }>; what: string };
  /** The data-bound replay with the product's cryptography added, in a baseline process of its own. */
  withCrypto: HttpTarget & { process: Child<{ pid: number }>; what: string };
  limit: HttpTarget & { what: string };
}): Promise<HttpMeasurement> {
  const { load, settings, ops, variants, product, dataBound, withCrypto } = options;
  const spec = (target: HttpTarget, part: LoadVariant[]) => postSpec(target, part, settings.connections);
  type Measured = { target: HttpTarget & { process: Counted }; processes: Record<string, Counted>; runs: LoadResult[] };
  const measure = (target: Measured['target'], label: string): Measured => ({
    target,
    processes: { [label]: target.process },
    runs: [],
  });
  const [data, crypto, ours] = [
    measure(dataBound, 'data api'),
    measure(withCrypto, 'data+crypto api'),
    measure(product, product.label),
  ] as const;
  // In the order of a first round: the replays, then the product.
  const all = [data, crypto, ours];
  for (const { target } of all) await load.run(spec(target, variants.slice(ops)));

  await resetCounters(all.map(({ target }) => target.process));
  for (const [round, part] of splitIntoRounds(variants.slice(0, ops), settings.rounds).entries())
    for (const { target, runs } of inTurn(all, round)) runs.push(await load.run(spec(target, part)));
  const costs = await Promise.all(all.map(async ({ processes }) => perOp(await readStats(processes), ops)));
  await settle(all.map(({ processes }, i) => ({ perOp: costs[i]!, children: processes })));
  const [dataCost, cryptoCost, productCost] = costs;
  // Last: the limit's route is served by the data-bound process, and tens of thousands of requests would warm its
  // HTTP stack far beyond the others' before they are measured.
  const limit = await load.run({
    ...spec(options.limit, variants),
    amount: undefined,
    durationSeconds: settings.limitSeconds,
  });

  const baseline = (what: string, { runs }: Measured, cost: PerOp) => {
    const run = combineRounds(runs);
    return dataBoundBaseline(what, ops / run.seconds, cost, run.p99Ms);
  };
  const productRun = combineRounds(ours.runs);
  return {
    product: { seconds: productRun.seconds, p50Ms: productRun.p50Ms, p99Ms: productRun.p99Ms, perOp: productCost! },
    dataBound: baseline(dataBound.what, data, dataCost!),
    withCrypto: baseline(withCrypto.what, crypto, cryptoCost!),
    limit: { what: options.limit.what, perSecond: limit.perSecond, p99Ms: limit.p99Ms },
  };
}

/** The entry's result from one HTTP measurement: the product's numbers next to its baselines. */
export function httpEntryResult(
  entry: { name: string; summary: string; unit: string; ops: number },
  m: HttpMeasurement,
): EntryResult {
  return entryResult({
    ...entry,
    seconds: m.product.seconds,
    p50Ms: m.product.p50Ms,
    p99Ms: m.product.p99Ms,
    baselines: { limit: m.limit, dataBound: m.dataBound, withCrypto: m.withCrypto },
    perOp: m.product.perOp,
  });
}
