/**
 * The shape shared by the request entries (payments POST, webhooks): the same
 * load generator, at the same concurrency, drives the product's api process, the
 * data-bound route and the bare route, one after another in one run.
 */
import type { Child } from './child';
import type { LoadSpec, LoadVariant } from './load-process';
import { entryResult, type Baseline, type EntryResult, dataBoundBaseline } from './report';
import {
  combineRounds,
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
 * target up (JIT, pools, data keys) untimed. The limit runs for a fixed time
 * with the same requests, cycled.
 */
export async function measureHttp(options: {
  load: LoadGenerator;
  settings: ClientSettings;
  ops: number;
  variants: LoadVariant[];
  product: HttpTarget & { process: Child<{ pid: number }>; label: string };
  dataBound: HttpTarget & { process: Child<{ pid: number }>; what: string };
  limit: HttpTarget & { what: string };
}): Promise<HttpMeasurement> {
  const { load, settings, ops, variants } = options;
  const spec = (target: HttpTarget, part: LoadVariant[]) => postSpec(target, part, settings.connections);
  const warm = variants.slice(ops);
  const measured = variants.slice(0, ops);
  for (const target of [options.product, options.dataBound, options.limit]) await load.run(spec(target, warm));

  const limit = await load.run({
    ...spec(options.limit, variants),
    amount: undefined,
    durationSeconds: settings.limitSeconds,
  });

  await resetCounters([options.dataBound.process, options.product.process]);
  const dataRuns = [];
  const productRuns = [];
  for (const part of splitIntoRounds(measured, settings.rounds)) {
    dataRuns.push(await load.run(spec(options.dataBound, part)));
    productRuns.push(await load.run(spec(options.product, part)));
  }
  const dataProcesses = { 'data api': options.dataBound.process };
  const productProcesses = { [options.product.label]: options.product.process };
  const dataPerOp = perOp(await readStats(dataProcesses), ops);
  const productPerOp = perOp(await readStats(productProcesses), ops);
  await settle([
    { perOp: productPerOp, children: productProcesses },
    { perOp: dataPerOp, children: dataProcesses },
  ]);
  const data = combineRounds(dataRuns);
  const product = combineRounds(productRuns);

  return {
    product: { seconds: product.seconds, p50Ms: product.p50Ms, p99Ms: product.p99Ms, perOp: productPerOp },
    dataBound: dataBoundBaseline(options.dataBound.what, ops / data.seconds, dataPerOp, data.p99Ms),
    limit: { what: options.limit.what, perSecond: limit.perSecond, p99Ms: limit.p99Ms },
  };
}

/** The entry's result from one HTTP measurement: the product's numbers next to both baselines. */
export function httpEntryResult(
  entry: { name: string; summary: string; unit: string; ops: number },
  m: HttpMeasurement,
): EntryResult {
  return entryResult({
    ...entry,
    seconds: m.product.seconds,
    p50Ms: m.product.p50Ms,
    p99Ms: m.product.p99Ms,
    baselines: { limit: m.limit, dataBound: m.dataBound },
    perOp: m.product.perOp,
  });
}
