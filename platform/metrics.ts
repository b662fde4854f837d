import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from './logger';

/**
 * The process's Prometheus metrics. Labels are route patterns, queue names, states and reason codes: never ids,
 * amounts or anything a request carried, so nothing about a payer can reach a scrape.
 */
export const registry = new Registry();
registry.setDefaultLabels({ service: 'hipaa-billing' });
collectDefaultMetrics({ register: registry });

export const httpRequestDuration = new Histogram({
  name: 'hipaa_billing_http_request_duration_seconds',
  help: 'HTTP request latency by route pattern, method and status',
  labelNames: ['method', 'route', 'status'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

export const jobDuration = new Histogram({
  name: 'hipaa_billing_job_duration_seconds',
  help: 'Job attempt run time by queue and outcome (completed, failed)',
  labelNames: ['queue', 'outcome'] as const,
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

export const jobFailures = new Counter({
  name: 'hipaa_billing_job_failures_total',
  help: 'Failed job attempts by queue and reason code',
  labelNames: ['queue', 'reason'] as const,
  registers: [registry],
});

export const outboxRequeued = new Counter({
  name: 'hipaa_billing_outbox_requeued_total',
  help: 'Records the outbox sweep gave a job again (their enqueue was lost, or their job ran out), by source',
  labelNames: ['source'] as const,
  registers: [registry],
});

/** Outgoing webhook delivery attempts by outcome (delivered, failed, refused, endpoint_disabled). */
export const webhookDeliveries = new Counter({
  name: 'hipaa_billing_webhook_deliveries_total',
  help: 'Outgoing webhook delivery attempts by outcome',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const invoicesRendered = new Counter({
  name: 'hipaa_billing_invoices_rendered_total',
  help: 'Invoice and credit-note documents rendered and stored',
  labelNames: ['kind'] as const,
  registers: [registry],
});

/**
 * A gauge whose values are read when Prometheus scrapes (queue counts, due renewals): `read` returns label sets and
 * values. Registered once per process however many times it is asked for (api and workers may share a process).
 * `cacheMs` bounds how often `read` runs (it queries MongoDB or Redis): scrapes within it get the last values, and
 * concurrent scrapes share one read.
 */
export function gaugeOnScrape<L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  read: () => Promise<Array<{ labels: Partial<Record<L, string>>; value: number }>>,
  options: { cacheMs?: number } = {},
): void {
  if (registry.getSingleMetric(name)) return;
  const cacheMs = options.cacheMs ?? 0;
  let cached: { at: number; rows: ReturnType<typeof read> } | undefined;
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      const now = Date.now();
      if (!cached || now - cached.at >= cacheMs) {
        const rows = read();
        cached = { at: now, rows };
        // A failed read is not kept: the next scrape tries again.
        rows.catch(() => {
          if (cached?.rows === rows) cached = undefined;
        });
      }
      const rows = await cached.rows;
      this.reset();
      for (const { labels, value } of rows) this.set(labels, value);
    },
  });
}

function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * Serves `/metrics` on its own port (localhost by default: not on the api's public listener). With `bearerToken`,
 * a scrape without `Authorization: Bearer <token>` gets 401. Port 0 takes a free port; the logged url names it.
 * A port in use fails with one line naming `setting` (the variable to change).
 */
export async function startMetricsServer(options: {
  host: string;
  port: number;
  bearerToken?: string;
  /** What runs here, for the port-clash line ("the api", "the workers"). */
  what?: string;
  setting?: string;
  logger: Pick<Logger, 'info' | 'warn'>;
}): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    if (options.bearerToken !== undefined) {
      const given = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1];
      if (given === undefined || !sameSecret(given, options.bearerToken)) {
        response.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
        return;
      }
    }
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) => {
        options.logger.warn({ reason: error instanceof Error ? error.message : String(error) }, 'metrics failed');
        response.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EADDRINUSE') return reject(error);
      const setting = options.setting ?? 'METRICS_PORT';
      reject(
        new Error(
          `port ${options.port} on ${options.host} (for ${options.what ?? 'metrics'}) is already in use; set ${setting} to another port, 0 for a free one, or off`,
        ),
      );
    });
    server.listen(options.port, options.host, resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`;
  options.logger.info({ url }, 'metrics listening');
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
