/**
 * A bench child that only generates HTTP load: autocannon, in a process of its
 * own so the client never competes with the server for an event loop (an
 * in-process fetch loop tops out near 1.5k requests/s here; autocannon drives a
 * bare Fastify route at about 18k). The parent sends a `LoadSpec`, gets a `LoadResult`.
 */
import autocannon from 'autocannon';
import { announceReady, serveParent } from './child';

export interface LoadVariant {
  body?: string;
  headers?: Record<string, string>;
}

export interface LoadSpec {
  url: string;
  method: 'GET' | 'POST';
  connections: number;
  /** Exactly this many requests… */
  amount?: number;
  /** …or as many as fit in this many seconds. */
  durationSeconds?: number;
  headers?: Record<string, string>;
  /** Request i uses variant i (cycled): distinct idempotency keys, distinct signed events. */
  variants?: LoadVariant[];
  /** Every response must have this status; anything else fails the run. */
  expectStatus: number;
}

export interface LoadResult {
  requests: number;
  seconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Epoch ms when the first request went out: the start of an end-to-end measurement. */
  startedAt: number;
}

async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  let next = 0;
  const variants = spec.variants ?? [];
  const statuses = new Map<number, number>();
  let firstUnexpected: string | undefined;
  // autocannon ends a run (and stamps its `finish`) only at its next 1 s sample tick, not at the last answer: a
  // 2,000-request run that took 3.2 s reported 4.01 s, so two runs within a second of each other tied. The run's
  // length here is up to the last answer, taken as it arrives.
  let lastAnswerAt = 0;
  const result = await autocannon({
    url: spec.url,
    method: spec.method,
    connections: spec.amount === undefined ? spec.connections : Math.min(spec.connections, spec.amount),
    ...(spec.amount !== undefined ? { amount: spec.amount } : { duration: spec.durationSeconds ?? 5 }),
    headers: spec.headers ?? {},
    timeout: 30,
    requests: [
      {
        method: spec.method,
        setupRequest:
          variants.length === 0
            ? undefined
            : (request) => {
                const variant = variants[next++ % variants.length]!;
                return {
                  ...request,
                  ...(variant.body !== undefined ? { body: variant.body } : {}),
                  headers: { ...request.headers, ...variant.headers },
                };
              },
        onResponse: (status, body) => {
          lastAnswerAt = Date.now();
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status !== spec.expectStatus) firstUnexpected ??= `${status} ${String(body).slice(0, 300)}`;
        },
      },
    ],
  });
  const unexpected = [...statuses].filter(([status]) => status !== spec.expectStatus);
  if (unexpected.length > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(
      `${spec.method} ${spec.url}: expected every answer to be ${spec.expectStatus}; got statuses ` +
        `${JSON.stringify(Object.fromEntries(statuses))}, ${result.errors} errors, ${result.timeouts} timeouts; first: ${firstUnexpected ?? '-'}`,
    );
  }
  const startedAt = new Date(result.start).getTime();
  const seconds = (lastAnswerAt - startedAt) / 1000;
  const requests = result.requests.total;
  return {
    requests,
    seconds,
    perSecond: requests / seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    startedAt,
  };
}

if (require.main === module) {
  serveParent({ run: (spec) => runLoad(spec as LoadSpec) }, async () => undefined);
  announceReady({ pid: process.pid });
}
