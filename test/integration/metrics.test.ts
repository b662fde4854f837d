import { createServer, type Server } from 'node:net';
import { ulid } from 'ulid';
import { registerOperationalGauges } from '../../application/ops/operational-gauges';
import { DEFAULT_METRICS_PORTS, serveMetrics } from '../../application/ops/serve-metrics';
import { createCompany } from '../../models/companies';
import { startMetricsServer } from '../../platform/metrics';
import { waitFor } from '../support/harness';
import { freePort } from '../../devtools/ports';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks } from '../support/stripe-events';

/** Issue 15: /metrics in Prometheus format on a listener of its own; counts, route patterns and codes, never ids. */
let system: InProcessSystem;
let metrics: { url: string; close(): Promise<void> };
let companyId: string;
let admin: string;

const CUSTOMER = 'cus_MetricsPatient0001';
const GAUGE_CACHE_MS = 8_000;

async function pay(paymentMethod: string) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${admin}`,
      'content-type': 'application/json',
      'idempotency-key': `metrics-${ulid()}`,
    },
    body: JSON.stringify({ amount: 1_500, currency: 'usd', customer: CUSTOMER, paymentMethod }),
  });
  expect(response.status).toBe(202);
  const { id } = (await response.json()) as { id: string };
  await waitFor(
    () => system.ctx.db.models.Payment.findById(id).lean(),
    (payment) => payment?.status === 'succeeded' || payment?.status === 'failed',
    { what: `payment ${id}` },
  );
  return id;
}

/** The value of one sample, by metric name and the labels it must carry. */
function sample(body: string, name: string, labels: Record<string, string>): number | undefined {
  const line = body
    .split('\n')
    .find(
      (l) =>
        l.startsWith(`${name}{`) && Object.entries(labels).every(([key, value]) => l.includes(`${key}="${value}"`)),
    );
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

beforeAll(async () => {
  system = await startInProcessSystem('metrics');
  // Gauges computed at most every GAUGE_CACHE_MS (production default 15 s): long enough to see a cached value.
  registerOperationalGauges({ queues: system.ctx.queues, models: system.ctx.db.models, cacheMs: GAUGE_CACHE_MS });
  metrics = await startMetricsServer({ host: '127.0.0.1', port: 0, logger: system.ctx.logger });
  companyId = await createCompany(system.ctx.db, { name: 'Metrics Family Clinic' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-metrics' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51MetricsClinicKey0001',
    webhookSigningSecrets: ['whsec_MetricsClinicSecret001'],
  });
});

afterAll(async () => {
  await metrics?.close();
  await system?.close();
});

it('serves request latency, jobs by state, failures by reason code and operational gauges, with no ids', async () => {
  const paid = await pay('pm_card_visa');
  const declined = await pay('pm_card_chargeDeclined');
  // The payment row says failed before the worker counts its job's failure: wait on the counts asserted below.
  const body = await waitFor(
    () => fetch(metrics.url).then((r) => r.text()),
    (text) =>
      (sample(text, 'hipaa_billing_job_failures_total', { queue: 'charges', reason: 'card_declined' }) ?? 0) >= 1 &&
      (sample(text, 'hipaa_billing_job_duration_seconds_count', { queue: 'charges', outcome: 'completed' }) ?? 0) >= 1,
    { what: 'the charge jobs to be counted' },
  );
  const response = await fetch(metrics.url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');

  const route = '/v1/companies/:companyId/payments';
  expect(
    sample(body, 'hipaa_billing_http_request_duration_seconds_count', { route, method: 'POST', status: '202' }),
  ).toBeGreaterThanOrEqual(2);
  expect(
    sample(body, 'hipaa_billing_job_failures_total', { queue: 'charges', reason: 'card_declined' }),
  ).toBeGreaterThanOrEqual(1);
  expect(
    sample(body, 'hipaa_billing_job_duration_seconds_count', { queue: 'charges', outcome: 'completed' }),
  ).toBeGreaterThanOrEqual(1);
  // A gauge: the first scrape may predate the failed job (and is then cached); its next reading sees it.
  await waitFor(
    () => fetch(metrics.url).then((r) => r.text()),
    (text) => (sample(text, 'hipaa_billing_jobs', { queue: 'charges', state: 'failed' }) ?? 0) >= 1,
    { timeoutMs: GAUGE_CACHE_MS + 20_000, what: 'the failed charge job in the jobs gauge' },
  );
  expect(sample(body, 'hipaa_billing_jobs', { queue: 'renewals', state: 'waiting' })).toBeDefined();
  expect(sample(body, 'hipaa_billing_audit_backlog', {})).toBeDefined();
  expect(sample(body, 'hipaa_billing_needs_attention', { kind: 'payment' })).toBe(0);
  expect(sample(body, 'hipaa_billing_renewals_due', {})).toBe(0);

  // The paid visit's invoice, rendered on the worker threads.
  const rendered = await waitFor(
    () => fetch(metrics.url).then((r) => r.text()),
    (text) => (sample(text, 'hipaa_billing_invoices_rendered_total', { kind: 'invoice' }) ?? 0) >= 1,
    { what: 'an invoice to be rendered' },
  );
  expect(sample(rendered, 'hipaa_billing_invoices_rendered_total', { kind: 'invoice' })).toBe(1);

  // Route patterns and codes only: no payment, company or customer id, no token.
  for (const value of [paid, declined, companyId, CUSTOMER, admin]) expect(body).not.toContain(value);
});

it('answers nothing but GET /metrics', async () => {
  expect((await fetch(metrics.url.replace('/metrics', '/'))).status).toBe(404);
  expect((await fetch(metrics.url, { method: 'POST' })).status).toBe(404);
});

it('computes the gauges at most once per cache period: a scrape does not query MongoDB each time', async () => {
  const before = await fetch(metrics.url).then((r) => r.text());
  const shown = sample(before, 'hipaa_billing_needs_attention', { kind: 'refund' });
  expect(shown).toBe(0);
  const started = Date.now();
  await system.ctx.db.models.Refund.collection.insertOne({ status: 'needs_attention', companyId: 'metrics-cache' });
  const again = await fetch(metrics.url).then((r) => r.text());
  // Within the cache period the scrape shows the values read before the insert.
  if (Date.now() - started < GAUGE_CACHE_MS / 2) {
    expect(sample(again, 'hipaa_billing_needs_attention', { kind: 'refund' })).toBe(0);
  }
  await waitFor(
    () => fetch(metrics.url).then((r) => r.text()),
    (text) => sample(text, 'hipaa_billing_needs_attention', { kind: 'refund' }) === 1,
    { timeoutMs: GAUGE_CACHE_MS + 20_000, intervalMs: 500, what: 'the gauge to be read again after its cache period' },
  );
  await system.ctx.db.models.Refund.collection.deleteMany({ companyId: 'metrics-cache' });
}, 60_000);

it('asks for the bearer token when one is set', async () => {
  const token = 'metrics-scrape-token-0123456789abcdef';
  const guarded = await startMetricsServer({
    host: '127.0.0.1',
    port: 0,
    bearerToken: token,
    logger: system.ctx.logger,
  });
  try {
    expect((await fetch(guarded.url)).status).toBe(401);
    expect((await fetch(guarded.url, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
    const allowed = await fetch(guarded.url, { headers: { authorization: `Bearer ${token}` } });
    expect(allowed.status).toBe(200);
    expect(await allowed.text()).toContain('hipaa_billing_http_request_duration_seconds');
  } finally {
    await guarded.close();
  }
});

describe('metrics ports', () => {
  const deps = () => ({ queues: system.ctx.queues, models: system.ctx.db.models });
  const settings = { host: '127.0.0.1', gaugeCacheMs: 15_000 };

  it('gives workers and the api a port each by default, so both run on one host', async () => {
    const workers = await serveMetrics({ ...settings }, 'workers', system.ctx.logger, deps());
    try {
      const api = await serveMetrics({ ...settings }, 'api', system.ctx.logger, deps());
      try {
        expect(new URL(api!.url).port).toBe(String(DEFAULT_METRICS_PORTS.api));
        expect(new URL(workers!.url).port).toBe(String(DEFAULT_METRICS_PORTS.workers));
        expect((await fetch(api!.url)).status).toBe(200);
      } finally {
        await api?.close();
      }
    } finally {
      await workers?.close();
    }
  });

  it('takes a free port for 0 and logs where, and serves nothing for off', async () => {
    const picked = await serveMetrics({ ...settings, port: 0 }, 'workers', system.ctx.logger, deps());
    try {
      expect(Number(new URL(picked!.url).port)).toBeGreaterThan(0);
      expect(system.ctx.logs.text).toContain(picked!.url);
    } finally {
      await picked?.close();
    }
    expect(await serveMetrics({ ...settings, port: 'off' }, 'api', system.ctx.logger, deps())).toBeUndefined();
  });

  it('a port in use: one line naming the setting to change', async () => {
    const port = await freePort();
    const squatter: Server = createServer();
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    try {
      await expect(serveMetrics({ ...settings, port }, 'api', system.ctx.logger, deps())).rejects.toThrow(
        `port ${port} on 127.0.0.1 (for the api's metrics) is already in use; set METRICS_PORT to another port, 0 for a free one, or off`,
      );
    } finally {
      await new Promise<void>((resolve) => squatter.close(() => resolve()));
    }
  });
});
