/**
 * End to end: the compiled api and workers run as their own processes, as in
 * production, and are driven over HTTP. Stripe is stripe-mock behind the
 * test-mode simulator (devtools/stripe-sim.ts) running in this process.
 *
 * Run with `npm test` (builds first) or `npm run build && npx jest test/e2e`.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { Queue } from 'bullmq';
import {
  createHipaaBillingClient,
  HipaaBillingError,
  type HipaaBillingClient,
  type paths,
} from '../../clients/typescript/src';
import { mintDevToken } from '../../devtools/tokens';
import { startStripeSim, type RecordedStripeRequest, type StripeSim } from '../../devtools/stripe-sim';
import { createCompany, devAttestation } from '../../models/companies';
import { QUEUE_NAMES } from '../../queues/names';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { freePort } from '../../devtools/ports';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';
import { chargeJobId } from '../../queues/charges.queue';

const SHUTDOWN_DEADLINE_MS = 10_000;
const suffix = randomBytes(6).toString('hex');

// Values that must never reach Redis or the logs (ARCHITECTURE principle 1).
const STRIPE_SECRET_KEY = `sk_test_e2eSecret${suffix}`;
const PATIENT_DETAILS = {
  patientName: 'Margaret Holloway-Testpatient',
  dateOfBirth: '1957-03-14',
  diagnosis: 'E11.9 type 2 diabetes',
};
// The careless request is refused, so even its (harmless) request id must not be found in Redis.
const CARELESS_REQUEST_ID = randomUUID();

type Json = Record<string, unknown>;
type PaymentRequest = paths['/v1/companies/{companyId}/payments']['post']['requestBody']['content']['application/json'];

let ctx: TestContext | undefined;
let sim: StripeSim | undefined;
let api: NodeProcess | undefined;
let workers: NodeProcess | undefined;
let chargesQueue: Queue | undefined;
let auditQueue: Queue | undefined;
let maintenanceQueue: Queue | undefined;
let apiUrl = '';
let metricsPort = 0;
let companyId = '';
let token = '';
/** The published client (clients/typescript), as an upstream app uses it. */
let billing: HipaaBillingClient | undefined;

/** Payments made by the scenarios, and the request id each was made with. */
const made: Record<'visa' | 'declined' | 'threeDSecure', { paymentId: string; requestId: string } | undefined> = {
  visa: undefined,
  declined: undefined,
  threeDSecure: undefined,
};
let clientSecret = '';

function context(): TestContext {
  if (!ctx) throw new Error('test context was not created (see beforeAll)');
  return ctx;
}

function stripeSim(): StripeSim {
  if (!sim) throw new Error('stripe-sim was not started (see beforeAll)');
  return sim;
}

function payment(which: keyof typeof made): { paymentId: string; requestId: string } {
  const value = made[which];
  if (!value) throw new Error(`the ${which} payment was not made (an earlier test failed)`);
  return value;
}

function client(): HipaaBillingClient {
  if (!billing) throw new Error('the client was not created (see beforeAll)');
  return billing;
}

/** POST …/payments through the client, with our own Idempotency-Key (and request id); errors are thrown. */
async function postPayment(body: PaymentRequest, idempotencyKey: string, requestId?: string) {
  const { data, response } = await client().POST('/v1/companies/{companyId}/payments', {
    params: { path: { companyId }, header: { 'Idempotency-Key': idempotencyKey } },
    body,
    ...(requestId ? { headers: { 'x-request-id': requestId } } : {}),
  });
  if (!data) throw new Error(`POST …/payments answered ${response.status} without a body`);
  return { status: response.status, headers: response.headers, body: data };
}

async function getPayment(paymentId: string) {
  const { data } = await client().GET('/v1/companies/{companyId}/payments/{paymentId}', {
    params: { path: { companyId, paymentId } },
  });
  if (!data) throw new Error(`GET payment ${paymentId} answered without a body`);
  return data;
}

/** Polls the payment through the client until it leaves queued/processing. */
function settledPayment(paymentId: string) {
  return client().waitForPayment(companyId, paymentId, { timeoutMs: 30_000, intervalMs: 50 });
}

async function intentIdOf(paymentId: string): Promise<string> {
  const stored = await context().db.models.Payment.findById(paymentId).lean();
  const intentId = stored?.stripePaymentIntentId;
  if (!intentId) throw new Error(`payment ${paymentId} has no PaymentIntent id recorded`);
  return intentId;
}

function gatewayRequests(matches: (request: RecordedStripeRequest) => boolean): RecordedStripeRequest[] {
  return stripeSim().requests.filter(matches);
}

/** PaymentIntent creations for one of our payments (they carry our payment id as metadata). */
function intentCreations(paymentId: string): RecordedStripeRequest[] {
  return gatewayRequests(
    (r) =>
      r.method === 'POST' &&
      r.path === '/v1/payment_intents' &&
      (r.form.metadata as Json | undefined)?.payment_id === paymentId,
  );
}

function confirmations(intentId: string): RecordedStripeRequest[] {
  return gatewayRequests((r) => r.method === 'POST' && r.path === `/v1/payment_intents/${intentId}/confirm`);
}

async function auditActions(paymentId: string): Promise<string[]> {
  const events = await context()
    .db.models.AuditEvent.find({ 'resource.type': 'payment', 'resource.id': paymentId })
    .lean()
    .exec();
  return events.map((event) => event.action).sort();
}

async function waitForAuditTrail(paymentId: string, expected: string[]): Promise<void> {
  await waitFor(
    () => auditActions(paymentId),
    (actions) => actions.length >= expected.length,
    { timeoutMs: 20_000, what: `the audit trail of ${paymentId}` },
  );
  expect(await auditActions(paymentId)).toEqual([...expected].sort());
}

async function totalJobs(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts();
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

/** Every key under the test's queue prefix, with every value read according to its type. */
async function readAllRedisValues(): Promise<{ keys: Map<string, string>; types: Map<string, number> }> {
  const { redis, config } = context();
  const keys = new Map<string, string>();
  const types = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${config.queuePrefix}:*`, 'COUNT', 500);
    cursor = next;
    for (const key of batch) {
      if (keys.has(key)) continue; // SCAN may return a key more than once
      const type = await redis.type(key);
      // latin1 keeps every byte (msgpack-encoded fields too); the seeded strings are ASCII.
      const text = (buffers: Buffer[]): string => buffers.map((b) => b.toString('latin1')).join('\n');
      let value: string;
      switch (type) {
        case 'string':
          value = text([(await redis.getBuffer(key)) ?? Buffer.alloc(0)]);
          break;
        case 'hash':
          value = Object.entries(await redis.hgetallBuffer(key))
            .map(([field, v]) => `${field}=${v.toString('latin1')}`)
            .join('\n');
          break;
        case 'list':
          value = text(await redis.lrangeBuffer(key, 0, -1));
          break;
        case 'set':
          value = text(await redis.smembersBuffer(key));
          break;
        case 'zset':
          value = text(await redis.zrangeBuffer(key, 0, -1));
          break;
        case 'stream':
          value = (await redis.xrangeBuffer(key, '-', '+'))
            .map(([id, fields]) => `${id.toString('latin1')} ${text(fields)}`)
            .join('\n');
          break;
        case 'none':
          continue; // expired between SCAN and TYPE (lock and marker keys have TTLs)
        default:
          throw new Error(`key ${key} has type ${type}, which this scan does not read`);
      }
      keys.set(key, value);
      types.set(type, (types.get(type) ?? 0) + 1);
    }
  } while (cursor !== '0');
  return { keys, types };
}

/** The seeded strings that occur in `text`. */
function leaked(text: string, seeded: Record<string, string>): string[] {
  return Object.entries(seeded)
    .filter(([, value]) => value !== '' && text.includes(value))
    .map(([what]) => what);
}

beforeAll(async () => {
  assertBuildIsCurrent();
  const upstreamUrl = process.env.STRIPE_API_BASE;
  if (!upstreamUrl) throw new Error('STRIPE_API_BASE is not set (the services global setup sets it)');
  sim = await startStripeSim({ upstreamUrl });
  ctx = await createTestContext('e2e', {
    STRIPE_API_BASE: sim.url,
    // Short sweeps, so the outbox sweep runs many times during the test and could re-charge anything it wrongly picks up.
    OUTBOX_SWEEP_EVERY_MS: '300',
    OUTBOX_STALE_AFTER_MS: '1000',
    SHUTDOWN_DEADLINE_MS: String(SHUTDOWN_DEADLINE_MS),
  });
  companyId = await createCompany(ctx.db, {
    name: 'Holloway Family Practice',
    stripeSecretKey: STRIPE_SECRET_KEY,
    compliance: devAttestation('test'),
  });
  token = await mintDevToken(ctx.config, { companyId, roles: ['service'] });
  ({ charges: chargesQueue, audit: auditQueue, maintenance: maintenanceQueue } = ctx.queues);

  // PORT 0: the OS picks a free port, and the api logs the address it listens on.
  api = startNodeProcess('api', 'api/main.js', { ...ctx.env, PORT: '0' });
  metricsPort = await freePort();
  workers = startNodeProcess('workers', 'workers/main.js', { ...ctx.env, METRICS_PORT: String(metricsPort) });
  const listening = await api.waitForLog((r) => r.msg === 'api listening', { what: '"api listening"' });
  apiUrl = String(listening.url);
  await waitFor(
    () =>
      fetch(`${apiUrl}/readyz`)
        .then((r) => r.status)
        .catch(() => 0),
    (status) => status === 200,
    { timeoutMs: 20_000, what: 'GET /readyz to answer 200' },
  );
  await workers.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });
  billing = createHipaaBillingClient({ baseUrl: apiUrl, token });
}, 60_000);

afterAll(async () => {
  await Promise.all([api?.kill(), workers?.kill()]);
  await sim?.close();
  await ctx?.close();
});

describe('charge path, api and workers as separate processes', () => {
  it('charges a card once: 202 queued, then succeeded; a retried request returns the same payment and charges nothing more', async () => {
    const requestId = randomUUID();
    const key = `idem-visa-${suffix}`;
    const body: PaymentRequest = {
      amount: 4_250,
      currency: 'usd',
      customer: 'cus_E2eVisa',
      paymentMethod: 'pm_card_visa',
      serviceCategory: 'copay',
    };

    const accepted = await postPayment(body, key, requestId);
    expect(accepted.status).toBe(202);
    expect(accepted.body).toEqual({ id: expect.stringMatching(/^pay_[0-9A-Z]{26}$/), status: 'queued' });
    expect(accepted.headers.get('x-request-id')).toBe(requestId);
    const paymentId = accepted.body.id;
    made.visa = { paymentId, requestId };

    const settled = await settledPayment(paymentId);
    expect(settled).toMatchObject({
      id: paymentId,
      status: 'succeeded',
      amount: 4_250,
      currency: 'usd',
      serviceCategory: 'copay',
    });
    expect(settled).not.toHaveProperty('failure');

    const replay = await postPayment(body, key);
    expect(replay.status).toBe(202);
    expect(replay.body).toEqual({ id: paymentId, status: 'succeeded' });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');

    const intentId = await intentIdOf(paymentId);
    expect(intentCreations(paymentId)).toHaveLength(1);
    expect(stripeSim().succeededChargeCount(intentId)).toBe(1);
    // Stripe saw amounts and opaque ids only.
    expect(intentCreations(paymentId)[0]?.form).toEqual({
      amount: '4250',
      currency: 'usd',
      customer: 'cus_E2eVisa',
      payment_method: 'pm_card_visa',
      allowed_payment_method_types: ['card'],
      metadata: { payment_id: paymentId, company_id: companyId },
    });

    await waitForAuditTrail(paymentId, ['payment.requested', 'payment.succeeded']);
  });

  it('a declined card fails with the decline reason and is not retried', async () => {
    const requestId = randomUUID();
    const accepted = await postPayment(
      {
        amount: 1_999,
        currency: 'usd',
        customer: 'cus_E2eDeclined',
        paymentMethod: 'pm_card_chargeDeclined',
        serviceCategory: 'copay',
      },
      `idem-declined-${suffix}`,
      requestId,
    );
    expect(accepted.status).toBe(202);
    expect(accepted.body.status).toBe('queued');
    const paymentId = accepted.body.id;
    made.declined = { paymentId, requestId };

    const settled = await settledPayment(paymentId);
    expect(settled).toMatchObject({
      id: paymentId,
      status: 'failed',
      failure: { code: 'card_declined', declineCode: 'generic_decline', message: expect.any(String) },
    });

    const intentId = await intentIdOf(paymentId);
    expect(intentCreations(paymentId)).toHaveLength(1);
    expect(confirmations(intentId)).toHaveLength(1);
    expect(stripeSim().succeededChargeCount(intentId)).toBe(0);
    // Failed for good after one attempt: no retry is scheduled.
    const job = await chargesQueue!.getJob(chargeJobId(paymentId));
    expect(await job?.getState()).toBe('failed');
    expect(job?.attemptsMade).toBe(1);

    await waitForAuditTrail(paymentId, ['payment.requested', 'payment.failed']);
  });

  it('a card that needs 3-D Secure waits for the payer, with what the app needs to let them authenticate', async () => {
    const requestId = randomUUID();
    const accepted = await postPayment(
      {
        amount: 15_000,
        currency: 'usd',
        customer: 'cus_E2eThreeDS',
        paymentMethod: 'pm_card_threeDSecure2Required',
        serviceCategory: 'copay',
      },
      `idem-3ds-${suffix}`,
      requestId,
    );
    expect(accepted.status).toBe(202);
    const paymentId = accepted.body.id;
    made.threeDSecure = { paymentId, requestId };

    const settled = await settledPayment(paymentId);
    const intentId = await intentIdOf(paymentId);
    expect(settled).toMatchObject({
      id: paymentId,
      status: 'requires_action',
      nextAction: {
        type: 'use_stripe_sdk',
        clientSecret: expect.stringMatching(new RegExp(`^${intentId}_secret_\\w+$`)),
      },
    });
    clientSecret = settled.nextAction?.clientSecret ?? '';
    expect(stripeSim().succeededChargeCount(intentId)).toBe(0);

    // Stored encrypted: the raw document does not hold the client secret in clear.
    const raw = await context()
      .rawMongo.db()
      .collection('payments')
      .findOne({ _id: paymentId as never });
    expect(raw).not.toBeNull();
    expect(JSON.stringify(raw)).not.toContain(clientSecret);

    await waitForAuditTrail(paymentId, ['payment.requested', 'payment.requires_action']);
  });

  it('refuses patient details sent by a careless client with a 400 naming them, and records or queues nothing', async () => {
    const jobsBefore = await Promise.all([totalJobs(chargesQueue!), totalJobs(auditQueue!)]);
    const key = `idem-careless-${suffix}`;
    // A careless app's body: the type would refuse these fields, so it is built as plain JSON.
    const careless = {
      amount: 2_000,
      currency: 'usd',
      customer: 'cus_E2eCareless',
      paymentMethod: 'pm_card_visa',
      serviceCategory: 'copay',
      ...PATIENT_DETAILS,
    } as PaymentRequest;
    const refused = await postPayment(careless, key, CARELESS_REQUEST_ID).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(HipaaBillingError);
    const error = refused as HipaaBillingError;
    expect(error).toMatchObject({ status: 400, code: 'invalid_request', requestId: CARELESS_REQUEST_ID });
    const named = (error.details ?? []).map((d) => d.field).join(', ');
    for (const field of Object.keys(PATIENT_DETAILS)) expect(named).toContain(field);
    // Named, never echoed: not in anything the error body carried.
    expect(leaked(JSON.stringify({ message: error.message, details: error.details }), PATIENT_DETAILS)).toEqual([]);

    expect(await context().db.models.Payment.countDocuments({ companyId, idempotencyKey: key })).toBe(0);
    expect(await Promise.all([totalJobs(chargesQueue!), totalJobs(auditQueue!)])).toEqual(jobsBefore);
  });

  it('after several outbox sweeps, every payment still has exactly one PaymentIntent, one confirm and its audit trail', async () => {
    const since = Date.now();
    await waitFor(
      async () => (await maintenanceQueue!.getCompleted(0, 50)).filter((job) => (job.finishedOn ?? 0) > since).length,
      (sweeps) => sweeps >= 3,
      { timeoutMs: 20_000, what: 'three outbox sweeps to complete' },
    );
    const expectations = [
      ['visa', 'succeeded', ['payment.requested', 'payment.succeeded'], 1],
      ['declined', 'failed', ['payment.requested', 'payment.failed'], 0],
      ['threeDSecure', 'requires_action', ['payment.requested', 'payment.requires_action'], 0],
    ] as const;
    for (const [which, status, actions, charges] of expectations) {
      const { paymentId } = payment(which);
      expect((await getPayment(paymentId)).status).toBe(status);
      const intentId = await intentIdOf(paymentId);
      expect(intentCreations(paymentId)).toHaveLength(1);
      expect(confirmations(intentId)).toHaveLength(1);
      expect(stripeSim().succeededChargeCount(intentId)).toBe(charges);
      expect(await auditActions(paymentId)).toEqual([...actions].sort());
    }
  });

  it('the workers process serves /metrics on its own port: charges by outcome, declines by reason code, no ids', async () => {
    const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const count = (pattern: RegExp) => Number(pattern.exec(body)?.[1] ?? NaN);
    expect(count(/^hipaa_billing_jobs\{[^}]*queue="charges"[^}]*state="completed"[^}]*\} (\d+)$/m)).toBeGreaterThan(0);
    expect(
      count(/^hipaa_billing_job_failures_total\{[^}]*queue="charges"[^}]*reason="card_declined"[^}]*\} (\d+)$/m),
    ).toBeGreaterThan(0);
    expect(body).not.toContain(companyId);
    expect(body).not.toContain(payment('visa').paymentId);
  });

  it('shuts down cleanly on SIGTERM: both processes exit 0 within the deadline', async () => {
    const [apiExit, workersExit] = await Promise.all([
      api!.stop('SIGTERM', SHUTDOWN_DEADLINE_MS + 5_000),
      workers!.stop('SIGTERM', SHUTDOWN_DEADLINE_MS + 5_000),
    ]);
    expect(apiExit).toEqual({ code: 0, signal: null });
    expect(workersExit).toEqual({ code: 0, signal: null });
    expect(api!.logRecords().some((r) => r.msg === 'stopped cleanly')).toBe(true);
    expect(workers!.logRecords().some((r) => r.msg === 'stopped cleanly')).toBe(true);
  });

  it('no PHI or secret reached Redis or the logs', async () => {
    // Read after the processes stopped: nothing more will be written.
    const visa = payment('visa');
    const declined = payment('declined');
    const threeDSecure = payment('threeDSecure');
    expect(clientSecret).not.toBe('');
    const secrets: Record<string, string> = {
      'Stripe secret key': STRIPE_SECRET_KEY,
      '3-D Secure client secret': clientSecret,
      'bearer token': token,
      'bearer token signature': token.split('.')[2] ?? '',
      ...PATIENT_DETAILS,
    };
    // The refused request's id may be logged (it is how ops find that request), but nothing of it was queued.
    const seeded: Record<string, string> = { ...secrets, "the refused request's id": CARELESS_REQUEST_ID };

    const { keys, types } = await readAllRedisValues();
    const everything = [...keys].map(([key, value]) => `${key}\n${value}`).join('\n');
    const offending = [...keys].flatMap(([key, value]) =>
      leaked(`${key}\n${value}`, seeded).map((what) => `${what} in ${key}`),
    );
    expect(offending).toEqual([]);

    // Not vacuous: the scan read the queues' jobs, their events and indexes...
    expect(keys.size).toBeGreaterThanOrEqual(20);
    for (const type of ['hash', 'zset', 'stream']) expect(types.get(type) ?? 0).toBeGreaterThan(0);
    // ...including each charge job, whose payload is the payment id and request id and nothing else...
    for (const { paymentId, requestId } of [visa, declined, threeDSecure]) {
      const job = keys.get(`${context().config.queuePrefix}:${QUEUE_NAMES.charges}:${chargeJobId(paymentId)}`);
      expect(job).toBeDefined();
      const data = /^data=(.*)$/m.exec(job ?? '')?.[1];
      expect(JSON.parse(data ?? 'null')).toEqual({ paymentId, requestId });
      // ...and the scan would have seen a request id: the accepted requests' ids are there.
      expect(everything).toContain(requestId);
    }

    for (const child of [api!, workers!]) {
      expect({ process: child.name, leaked: leaked(child.text(), secrets) }).toEqual({
        process: child.name,
        leaked: [],
      });
    }
    // Not vacuous either: the logs are there and cover the requests and the jobs.
    expect(api!.text()).toContain(visa.paymentId);
    expect(workers!.text()).toContain(declined.paymentId);
  });
});
