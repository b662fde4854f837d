import type { Queue } from 'bullmq';
import { createCompany, devAttestation } from '../../models/companies';
import { updatePaymentSettings } from '../../models/payment-config';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { chargeJobId } from '../../queues/charges.queue';

let system: InProcessSystem;
let companyId: string;
let token: string;
let chargesQueue: Queue;
let keyCounter = 0;

const visa = { amount: 4_200, currency: 'usd', customer: 'cus_Patient0001', paymentMethod: 'pm_card_visa' };

function newKey(): string {
  keyCounter += 1;
  return `charge-path-key-${Date.now()}-${keyCounter}`;
}

async function post(body: unknown, options: { key?: string | null; token?: string | null; company?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const bearer = options.token === undefined ? token : options.token;
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const key = options.key === undefined ? newKey() : options.key;
  if (key) headers['idempotency-key'] = key;
  const response = await fetch(`${system.url}/v1/companies/${options.company ?? companyId}/payments`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

async function get(paymentId: string) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}/payments/${paymentId}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

async function settled(paymentId: string, timeoutMs = 20_000) {
  const result = await waitFor(
    () => get(paymentId),
    (r) => !['queued', 'processing'].includes(r.body.status),
    { timeoutMs, what: `payment ${paymentId} to settle` },
  );
  return result.body;
}

/** The payment is recorded before the worker hands the job back to BullMQ as failed. */
async function failedJob(paymentId: string) {
  await waitFor(
    async () => (await chargesQueue.getJob(chargeJobId(paymentId)))?.getState(),
    (state) => state === 'failed',
    { what: `charge job of ${paymentId} to fail` },
  );
  return chargesQueue.getJob(chargeJobId(paymentId));
}

function gatewayCalls(path: RegExp) {
  return system.sim.requests.filter((r) => r.method === 'POST' && path.test(r.path));
}

beforeAll(async () => {
  system = await startInProcessSystem('charge_path', { STRIPE_TIMEOUT_MS: '1500' });
  companyId = await createCompany(system.ctx.db, {
    name: 'Riverside Clinic',
    stripeSecretKey: 'sk_test_riverside',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
  chargesQueue = system.ctx.queues.charges;
});

afterAll(async () => {
  await system.close();
});

beforeEach(() => {
  system.sim.clearScripts();
});

describe('charging a payer', () => {
  it('accepts the request with 202, then charges it through Stripe and records succeeded', async () => {
    const response = await post({ ...visa, serviceCategory: 'copay' });
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ id: expect.stringMatching(/^pay_/), status: 'queued' });

    const payment = await settled(response.body.id);
    expect(payment).toMatchObject({ id: response.body.id, status: 'succeeded', amount: 4_200, currency: 'usd' });
    expect(payment.failure).toBeUndefined();

    const creates = gatewayCalls(/^\/v1\/payment_intents$/).filter((r) => r.idempotencyKey === response.body.id);
    expect(creates).toHaveLength(1);
    // Stripe sees amounts, currency and opaque ids only.
    expect(creates[0]!.form.metadata).toEqual({ payment_id: response.body.id, company_id: companyId });
    expect(Object.keys(creates[0]!.form).sort()).toEqual(
      ['allowed_payment_method_types', 'amount', 'currency', 'customer', 'metadata', 'payment_method'].sort(),
    );
  });

  it('treats the same Idempotency-Key and body as the same payment, with no second job or charge', async () => {
    const key = newKey();
    const first = await post(visa, { key });
    const again = await post(visa, { key });
    expect(again.status).toBe(202);
    expect(again.body.id).toBe(first.body.id);
    await settled(first.body.id);
    const third = await post(visa, { key });
    expect(third.body).toEqual({ id: first.body.id, status: 'succeeded' });

    const stored = await system.ctx.db.models.Payment.findById(first.body.id).lean();
    expect(system.sim.succeededChargeCount(stored!.stripePaymentIntentId!)).toBe(1);
    expect(await system.ctx.db.models.Payment.countDocuments({ idempotencyKey: key })).toBe(1);
  });

  it('refuses the same Idempotency-Key with a different body (422) and changes nothing', async () => {
    const key = newKey();
    const first = await post(visa, { key });
    const conflict = await post({ ...visa, amount: 9_999 }, { key });
    expect(conflict.status).toBe(422);
    expect(conflict.body.error.code).toBe('idempotency_key_conflict');
    const stored = await system.ctx.db.models.Payment.findById(first.body.id).lean();
    expect(stored?.amount).toBe(4_200);
  });

  it('records a declined card as failed with the decline code, without retrying', async () => {
    const response = await post({ ...visa, paymentMethod: 'pm_card_chargeDeclinedInsufficientFunds' });
    const payment = await settled(response.body.id);
    expect(payment.status).toBe('failed');
    expect(payment.failure).toMatchObject({ code: 'card_declined', declineCode: 'insufficient_funds' });
    // It says when it last changed: its settling.
    expect(Date.parse(payment.updatedAt)).toBeGreaterThan(Date.parse(payment.createdAt));
    const stored = await system.ctx.db.models.Payment.findById(response.body.id).lean();
    expect(stored!.updatedAt.getTime()).toBeGreaterThanOrEqual(stored!.completedAt!.getTime());
    expect(gatewayCalls(new RegExp(`^/v1/payment_intents/${stored!.stripePaymentIntentId}/confirm$`))).toHaveLength(1);
    const job = await failedJob(response.body.id);
    expect(job?.attemptsMade).toBe(1);
  });

  it('returns what the payer needs to finish 3-D Secure, and nothing more', async () => {
    const response = await post({ ...visa, paymentMethod: 'pm_card_threeDSecure2Required' });
    const payment = await settled(response.body.id);
    expect(payment.status).toBe('requires_action');
    expect(payment.nextAction).toEqual({ type: 'use_stripe_sdk', clientSecret: expect.stringMatching(/_secret_/) });
    expect(Object.keys(payment).sort()).toEqual(
      ['id', 'status', 'amount', 'currency', 'nextAction', 'createdAt', 'updatedAt'].sort(),
    );
    // The client secret is stored encrypted.
    const raw = await system.ctx.rawMongo.db().collection('payments').findOne({ _id: response.body.id });
    expect(raw?.action.clientSecret._bsontype).toBe('Binary');
    expect(raw?.action.clientSecret.sub_type).toBe(6);
  });

  it('fails with payment_config_missing, once and without calling the gateway, when the company has no Stripe key', async () => {
    const bare = await createCompany(system.ctx.db, { name: 'No Gateway Dental' });
    const bareToken = await system.token(bare);
    const before = system.sim.requests.length;
    const response = await post(visa, { company: bare, token: bareToken });
    expect(response.status).toBe(202);
    const stored = await waitFor(
      () => system.ctx.db.models.Payment.findById(response.body.id).lean(),
      (p) => p?.status === 'failed',
      { what: 'payment to fail' },
    );
    expect(stored?.failure?.code).toBe('payment_config_missing');
    expect(system.sim.requests.length).toBe(before);
    const job = await failedJob(response.body.id);
    expect(job?.attemptsMade).toBe(1);
  });
});

describe('what Stripe is told about a payment', () => {
  it("sends the company's configured statement descriptor to Stripe as statement_descriptor_suffix", async () => {
    const described = await createCompany(system.ctx.db, {
      name: 'Lakeside Family Care',
      stripeSecretKey: 'sk_test_LakesideDescriptor01',
      compliance: devAttestation('test'),
    });
    await updatePaymentSettings(
      system.ctx.db,
      { companyId: described },
      { statementDescriptor: 'LAKESIDE CARE' },
      'test',
    );
    const response = await post(visa, { company: described, token: await system.token(described) });
    expect(response.status).toBe(202);
    // stripe-mock (under stripe-sim) accepted it, and the charge went through.
    const payment = await waitFor(
      () => system.ctx.db.models.Payment.findById(response.body.id).lean(),
      (p) => p?.status !== 'queued' && p?.status !== 'processing',
      { what: 'the described payment to settle' },
    );
    expect({ status: payment?.status, failure: payment?.failure }).toEqual({ status: 'succeeded', failure: undefined });
    const creates = gatewayCalls(/^\/v1\/payment_intents$/).filter((r) => r.idempotencyKey === response.body.id);
    expect(creates).toHaveLength(1);
    // Card payments take the suffix form: Stripe refuses `statement_descriptor` for them.
    expect(creates[0]!.form.statement_descriptor_suffix).toBe('LAKESIDE CARE');
    expect(creates[0]!.form.statement_descriptor).toBeUndefined();
  });

  it('keeps office ids out of Stripe metadata: a payment for office behavioral-health reaches Stripe without it', async () => {
    const before = system.sim.requests.length;
    const response = await post({ ...visa, officeId: 'behavioral-health' });
    expect(response.status).toBe(202);
    // Our own record still knows the office.
    const payment = await waitFor(
      () => system.ctx.db.models.Payment.findById(response.body.id).lean(),
      (p) => p?.status !== 'queued' && p?.status !== 'processing',
      { what: 'the office payment to settle' },
    );
    expect(payment).toMatchObject({ status: 'succeeded', officeId: 'behavioral-health' });
    const creates = gatewayCalls(/^\/v1\/payment_intents$/).filter((r) => r.idempotencyKey === response.body.id);
    expect(creates).toHaveLength(1);
    expect(creates[0]!.form.metadata).toEqual({ payment_id: response.body.id, company_id: companyId });
    // Nothing sent to Stripe for it (create, confirm) names the office.
    expect(JSON.stringify(system.sim.requests.slice(before))).not.toContain('behavioral-health');
  });
});

describe('gateway outages are retried without charging twice', () => {
  it('retries a 500 from Stripe and then succeeds, reusing the saved PaymentIntent', async () => {
    system.sim.script({ method: 'POST', path: /\/confirm$/, status: 500 });
    const response = await post(visa);
    const payment = await settled(response.body.id);
    expect(payment.status).toBe('succeeded');
    const stored = await system.ctx.db.models.Payment.findById(response.body.id).lean();
    expect(stored?.attempts).toBe(2);
    expect(gatewayCalls(/^\/v1\/payment_intents$/).filter((r) => r.idempotencyKey === response.body.id)).toHaveLength(
      1,
    );
    expect(system.sim.succeededChargeCount(stored!.stripePaymentIntentId!)).toBe(1);
  });

  it('retries a 429 rate limit', async () => {
    system.sim.script({ method: 'POST', path: '/v1/payment_intents', status: 429 });
    const response = await post(visa);
    expect((await settled(response.body.id)).status).toBe('succeeded');
    const stored = await system.ctx.db.models.Payment.findById(response.body.id).lean();
    expect(stored?.attempts).toBe(2);
  });

  it('retries after a timeout whose confirm did reach Stripe, and still charges once', async () => {
    // The confirm is held past the client timeout; Stripe (the sim) still completes it.
    system.sim.script({ method: 'POST', path: /\/confirm$/, delayMs: 2_500 });
    const response = await post(visa);
    const payment = await settled(response.body.id, 30_000);
    expect(payment.status).toBe('succeeded');
    const stored = await system.ctx.db.models.Payment.findById(response.body.id).lean();
    expect(stored!.attempts).toBeGreaterThanOrEqual(2);
    expect(system.sim.succeededChargeCount(stored!.stripePaymentIntentId!)).toBe(1);
  });

  it('survives a dropped connection', async () => {
    system.sim.script({ method: 'POST', path: '/v1/payment_intents', destroySocket: true, times: 2 });
    const response = await post(visa);
    expect((await settled(response.body.id)).status).toBe('succeeded');
  });
});
