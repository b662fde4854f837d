import { ulid } from 'ulid';
import { registerOperationalGauges } from '../../application/ops/operational-gauges';
import { createCompany } from '../../models/companies';
import { startMetricsServer } from '../../platform/metrics';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks } from '../support/stripe-events';

/** Issue 15: /metrics in Prometheus format on a listener of its own; counts, route patterns and codes, never ids. */
let system: InProcessSystem;
let metrics: { url: string; close(): Promise<void> };
let companyId: string;
let admin: string;

const CUSTOMER = 'cus_MetricsPatient0001';

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
  registerOperationalGauges({ queues: system.ctx.queues, models: system.ctx.db.models });
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
  const response = await fetch(metrics.url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  const body = await response.text();

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
  expect(sample(body, 'hipaa_billing_jobs', { queue: 'charges', state: 'failed' })).toBeGreaterThanOrEqual(1);
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
