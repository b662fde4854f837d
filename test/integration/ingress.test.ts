import type { Queue } from 'bullmq';
import { startApi, type RunningApi } from '../../api/main';
import { createCompany, devAttestation } from '../../models/companies';
import { sweepOutbox } from '../../application/outbox/sweep-outbox';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { chargeJobId } from '../../queues/charges.queue';

let system: InProcessSystem;
let companyId: string;
let token: string;
let chargesQueue: Queue;
let stripeEventsQueue: Queue;

const valid = { amount: 1_500, currency: 'usd', customer: 'cus_Ingress01', paymentMethod: 'pm_card_visa' };

async function post(
  body: unknown,
  headers: Record<string, string | undefined> = {},
  options: { url?: string; company?: string } = {},
) {
  const merged: Record<string, string> = {
    'content-type': 'application/json',
    authorization: `Bearer ${token}`,
    'idempotency-key': `ingress-${Math.random().toString(36).slice(2)}`,
  };
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) delete merged[name];
    else merged[name] = value;
  }
  const response = await fetch(`${options.url ?? system.url}/v1/companies/${options.company ?? companyId}/payments`, {
    method: 'POST',
    headers: merged,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

async function nothingWritten() {
  expect(await system.ctx.db.models.Payment.countDocuments({})).toBe(0);
  const counts = await chargesQueue.getJobCounts();
  expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
}

beforeAll(async () => {
  system = await startInProcessSystem('ingress');
  companyId = await createCompany(system.ctx.db, {
    name: 'Hillside Family Medicine',
    stripeSecretKey: 'sk_test_hillside',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
  chargesQueue = system.ctx.queues.charges;
  stripeEventsQueue = system.ctx.queues['stripe-events'];
});

afterAll(async () => {
  await system.close();
});

describe('bad input gets a clear 4xx and changes nothing', () => {
  it('lists every problem: missing, malformed and extra fields', async () => {
    const response = await post({ amount: 12.5, currency: 'dollars', paymentMethod: 'card', patientName: 'Jane Roe' });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('invalid_request');
    const fields = (response.body.error.details as Array<{ field: string }>).map((d) => d.field).sort();
    expect(fields).toEqual(['amount', 'currency', 'customer', 'patientName', 'paymentMethod']);
    expect(JSON.stringify(response.body)).not.toContain('Jane Roe');
    await nothingWritten();
  });

  it.each([
    ['zero amount', 'amount', { ...valid, amount: 0 }],
    ['negative amount', 'amount', { ...valid, amount: -100 }],
    ['amount above the limit', 'amount', { ...valid, amount: 10_000_001 }],
    ['amount as a string', 'amount', { ...valid, amount: '1500' }],
    ['unknown currency', 'currency', { ...valid, currency: 'xyz' }],
    ['free-text service category', 'serviceCategory', { ...valid, serviceCategory: 'colonoscopy for J. Roe' }],
  ])('%s → 400 naming %s', async (_label, field, body) => {
    const response = await post(body);
    expect(response.status).toBe(400);
    expect(response.body.error.details.map((d: { field: string }) => d.field)).toEqual([field]);
    await nothingWritten();
  });

  it('a card number anywhere in the body → 400 telling the client to send a PaymentMethod id, never echoed or logged', async () => {
    for (const body of [
      { ...valid, paymentMethod: '4242424242424242' },
      { ...valid, note: 'card 4000 0566 5566 5556' },
    ]) {
      const response = await post(body);
      expect(response.status).toBe(400);
      expect(response.body.error).toEqual({
        code: 'card_number_refused',
        message: 'send a Stripe PaymentMethod id, never a card number',
      });
    }
    expect(system.ctx.logs.text).not.toMatch(/4242424242424242|4000 0566 5566 5556/);
    await nothingWritten();
  });

  it('malformed JSON → 400', async () => {
    const response = await post('{"amount": 1500,');
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('malformed_request');
    await nothingWritten();
  });

  it('a missing or too-short Idempotency-Key → 400', async () => {
    expect((await post(valid, { 'idempotency-key': undefined })).body.error.code).toBe('idempotency_key_required');
    expect((await post(valid, { 'idempotency-key': 'short' })).status).toBe(400);
    await nothingWritten();
  });

  it('an unknown company → 404', async () => {
    const otherToken = await system.token('co_unknown');
    const response = await post(valid, { authorization: `Bearer ${otherToken}` }, { company: 'co_unknown' });
    expect(response.status).toBe(404);
    expect(response.body.error.code).toBe('company_not_found');
    await nothingWritten();
  });
});

describe('no request without a valid token reaches a handler', () => {
  it.each([
    ['no Authorization header', 'authorization_missing', undefined],
    ['not a bearer token', 'authorization_malformed', 'Basic dXNlcjpwYXNz'],
    ['a tampered token', 'token_signature_invalid', 'TAMPER'],
  ])('%s → 401 %s', async (_label, code, header) => {
    const authorization = header === 'TAMPER' ? `Bearer ${token.slice(0, -4)}AAAA` : header;
    const response = await post(valid, { authorization });
    expect(response.status).toBe(401);
    expect(response.body.error.code).toBe(code);
    await nothingWritten();
  });

  it("a token for another company → 403, even for that company's valid body", async () => {
    const otherCompany = await createCompany(system.ctx.db, {
      name: 'Other Practice',
      stripeSecretKey: 'sk_test_other',
      compliance: devAttestation('test'),
    });
    const otherToken = await system.token(otherCompany);
    const response = await post(valid, { authorization: `Bearer ${otherToken}` });
    expect(response.status).toBe(403);
    expect(response.body.error.code).toBe('company_out_of_scope');
    await nothingWritten();
  });
});

describe('health', () => {
  it('/healthz answers while the process is up and /readyz reports Redis and MongoDB', async () => {
    expect(await (await fetch(`${system.url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${system.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', redis: 'ok', mongodb: 'ok' });
  });
});

describe('Redis down at request time', () => {
  let isolatedApi: RunningApi;
  beforeAll(async () => {
    // An api whose Redis is unreachable; MongoDB and everything else are the real ones.
    isolatedApi = await startApi(
      configWith(system.ctx, { REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' }),
      system.ctx.logger,
      system.ctx.db,
    );
  });
  afterAll(async () => isolatedApi.stop());

  it('an accepted intent is accepted: a payment recorded while Redis is down answers 202 (not 503), and the outbox sweep charges it once', async () => {
    const key = 'redis-down-idempotency-key';
    const response = await post(valid, { 'idempotency-key': key }, { url: isolatedApi.url });
    // Recorded: a 5xx would tell the client "not done", and a retry with a new key would pay twice.
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ id: expect.stringMatching(/^pay_/), status: 'queued' });
    const notReady = await fetch(`${isolatedApi.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toMatchObject({ redis: 'unavailable', mongodb: 'ok' });

    const recorded = await system.ctx.db.models.Payment.findOne({ idempotencyKey: key }).lean();
    expect(recorded?._id).toBe(response.body.id);
    expect(recorded?.status).toBe('queued');
    expect(await chargesQueue.getJob(chargeJobId(recorded!._id))).toBeUndefined();

    // The sweep that the maintenance scheduler runs every OUTBOX_SWEEP_EVERY_MS.
    const sweep = await sweepOutbox({
      models: system.ctx.db.models,
      chargesQueue,
      stripeEventsQueue,
      logger: system.ctx.logger,
      staleAfterMs: 0,
    });
    expect(sweep.requeued).toBe(1);
    const done = await waitFor(
      () => system.ctx.db.models.Payment.findById(recorded!._id).lean(),
      (p) => p?.status === 'succeeded',
      { what: 'swept payment to succeed' },
    );
    expect(done?.status).toBe('succeeded');

    // The client's retry with the same key finds the same payment.
    const retry = await post(valid, { 'idempotency-key': key });
    expect(retry.body).toEqual({ id: recorded!._id, status: 'succeeded' });

    // The audit trail still has the request, emitted by the worker since the ingress could not.
    const actions = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ 'resource.id': recorded!._id }).lean(),
      (events) => events.length === 2,
      { what: 'audit events' },
    );
    expect(actions.map((e) => e.action).sort()).toEqual(['payment.requested', 'payment.succeeded']);

    // A second sweep finds nothing to do: no duplicate job.
    const again = await sweepOutbox({
      models: system.ctx.db.models,
      chargesQueue,
      stripeEventsQueue,
      logger: system.ctx.logger,
      staleAfterMs: 0,
    });
    expect(again.requeued).toBe(0);
  });
});
