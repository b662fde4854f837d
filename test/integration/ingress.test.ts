import { Queue } from 'bullmq';
import { startApi, type RunningApi } from '../../api/main';
import { createCompany, devAttestation } from '../../models/companies';
import { sweepOutbox } from '../../application/outbox/sweep-outbox';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../../queues/charges.queue';
import { ALL_QUEUE_NAMES } from '../../queues/names';
import { deleteKeysByPrefix } from '../../devtools/redis-keys';

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

/**
 * A payment's events as an auditor reads them (sealed fields decrypted), in chain order, once its two events are
 * stored and the audit queue is idle (so a duplicate would be there too).
 */
async function paymentTrail(paymentId: string): Promise<Array<Record<string, any>>> {
  await waitFor(
    async () => {
      const counts = await system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const stored = await system.ctx.db.models.AuditEvent.countDocuments({ companyId, 'resource.id': paymentId });
      return Object.values(counts).every((n) => n === 0) && stored >= 2;
    },
    (done) => done,
    { what: `the audit events of ${paymentId}`, timeoutMs: 30_000 },
  );
  const auditor = await system.token(companyId, ['auditor'], { subject: 'usr-auditor' });
  const response = await fetch(`${system.url}/v1/companies/${companyId}/audit-events?resourceId=${paymentId}`, {
    headers: { authorization: `Bearer ${auditor}` },
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { items: Array<Record<string, any>> }).items.sort(
    (a, b) => Number(a.sequence) - Number(b.sequence),
  );
}

/** The `payment.requested` event of a payment the api recorded: its caller, its request id, where it came from. */
function requestedAsTheApiSaw(payment: { _id: string; requestId: string }, userAgent?: string) {
  return {
    action: 'payment.requested',
    outcome: 'success',
    actor: { type: 'service', id: 'svc-dev-app' },
    resource: { type: 'payment', id: payment._id },
    request: {
      requestId: payment.requestId,
      sourceIp: expect.stringMatching(/127\.0\.0\.1/),
      ...(userAgent ? { userAgent } : {}),
    },
  };
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

    // The audit trail still has the request, sent by the charge the sweep queued, as the api would have sent it.
    const trail = await paymentTrail(recorded!._id);
    expect(trail.map((e) => e.action)).toEqual(['payment.requested', 'payment.succeeded']);
    expect(trail[0]).toMatchObject(requestedAsTheApiSaw(recorded!));

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

describe('one job at the ingress', () => {
  it('POST payment queues its charge job and nothing else; the charge puts payment.requested, as the api saw it, before its outcome, each once', async () => {
    // An api on queues of its own, which no worker takes from: what one POST queues stays there to be counted.
    const prefix = system.ctx.config.queuePrefix.replace(/\}$/, '-apionly}');
    const apiOnly = await startApi(
      configWith(system.ctx, { QUEUE_PREFIX: prefix, PORT: '0' }),
      system.ctx.logger,
      system.ctx.db,
    );
    let paymentId: string;
    let charge: ChargeJob;
    try {
      const userAgent = 'PortalApp/7.1 (front desk)';
      const response = await post(valid, { 'user-agent': userAgent }, { url: apiOnly.url });
      expect(response.status).toBe(202);
      paymentId = response.body.id as string;

      const queued: Array<{ queue: string; id?: string; data: unknown }> = [];
      for (const name of ALL_QUEUE_NAMES) {
        const queue = new Queue(name, { connection: system.ctx.redis, prefix });
        try {
          const jobs = await queue.getJobs(['waiting', 'delayed', 'prioritized', 'active', 'completed', 'failed']);
          queued.push(...jobs.map((job) => ({ queue: name, id: job.id, data: job.data as unknown })));
        } finally {
          await queue.close();
        }
      }
      const recorded = await system.ctx.db.models.Payment.findById(paymentId).lean();
      // Exactly one job: the charge, ids only. No audit job: the request's event waits for the charge's run.
      expect(queued).toEqual([
        { queue: 'charges', id: chargeJobId(paymentId), data: { paymentId, requestId: recorded!.requestId } },
      ]);
      charge = queued[0]!.data as ChargeJob;
      // Where the request came from is on the payment, sealed (ciphertext), for that event: not in the clear.
      expect(recorded?.sealedContext).toEqual({ sourceIp: expect.any(String), userAgent: expect.any(String) });
      expect(JSON.stringify(recorded?.sealedContext)).not.toMatch(/127\.0\.0\.1|PortalApp/);

      // The same job, run by the workers: the request and its outcome on the trail, in that order, each once.
      await enqueueCharge(chargesQueue, charge);
      const trail = await paymentTrail(paymentId);
      expect(trail.map((e) => e.action)).toEqual(['payment.requested', 'payment.succeeded']);
      expect(trail[0]).toMatchObject(requestedAsTheApiSaw(recorded!, userAgent));
    } finally {
      await apiOnly.stop();
      await deleteKeysByPrefix(system.ctx.redis, prefix);
    }
  });
});
