import { percentile, runBounded } from './support';

export interface TimedRequests {
  count: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
}

/** Sends `count` requests with at most `concurrency` in flight; every one must answer `expectStatus`. */
export async function timeRequests(
  count: number,
  concurrency: number,
  expectStatus: number,
  send: (i: number) => Promise<Response>,
): Promise<TimedRequests> {
  const latencies: number[] = [];
  const started = process.hrtime.bigint();
  await runBounded(count, concurrency, async (i) => {
    const t0 = process.hrtime.bigint();
    const response = await send(i);
    const body = await response.arrayBuffer();
    latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (response.status !== expectStatus) {
      const answer = Buffer.from(body).toString('utf8').slice(0, 500);
      throw new Error(`request ${i} answered ${response.status}, not ${expectStatus}: ${answer}`);
    }
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  return { count, seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}
