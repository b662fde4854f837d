import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

/**
 * Issue 12 §1 and §7: once the money may have moved, nothing records "failed" without the gateway's answer; a
 * payment's retries, refunds and reconciliation use the gateway account that served it; a payment or refund whose
 * webhook is lost is settled by asking Stripe.
 */
let system: InProcessSystem;
let companyId: string;
let admin: string;

const WEBHOOK_SECRET = 'whsec_AttentionWebhookSecret01';
const ACCOUNT_A = { secretKey: 'sk_test_51AttentionA000001Key01', accountId: 'acct_1AttentionA000001' };
const ACCOUNT_B = { secretKey: 'sk_test_51AttentionB000001Key01', accountId: 'acct_1AttentionB000001' };
const visa = { currency: 'usd', customer: 'cus_AttentionPatient01', paymentMethod: 'pm_card_visa' };

type Json = Record<string, any>;

async function api(method: string, path: string, body?: unknown, key?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${admin}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (key) headers['idempotency-key'] = key;
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

async function useAccount(account: typeof ACCOUNT_A) {
  const put = await api('PUT', '/payment-config', {
    mode: 'company',
    credentials: { ...account, webhookSigningSecrets: [WEBHOOK_SECRET] },
  });
  expect(put.status).toBe(200);
  await attest();
}
async function attest() {
  const attested = await api('POST', '/payment-config/attestation', {
    status: 'exempt_1179',
    rationale: 'Stripe receives amounts and opaque ids only, never PHI (HIPAA section 1179).',
  });
  expect(attested.status).toBeLessThan(300);
}
const withdrawAttestation = () =>
  system.ctx.db.models.Company.updateOne({ _id: companyId }, { $unset: { 'payment_info.compliance': 1 } });

const isSettling = (status: string) => status === 'queued' || status === 'processing';
const payment = (id: string) => api('GET', `/payments/${id}`).then((r) => r.body);
const refund = (paymentId: string, id: string) =>
  api('GET', `/payments/${paymentId}/refunds/${id}`).then((r) => r.body);
const stored = (paymentId: string) => system.ctx.db.models.Payment.findById(paymentId).lean();
const requests = (method: string, path: RegExp) =>
  system.sim.requests.filter((r) => r.method === method && path.test(r.path)).length;

async function pay(amount: number, paymentMethod = 'pm_card_visa') {
  const created = await api('POST', '/payments', { ...visa, amount, paymentMethod }, `attention-${ulid()}`);
  expect(created.status).toBe(202);
  const settled = await waitFor(
    () => payment(created.body.id),
    (p) => !isSettling(p.status),
    { what: `payment ${created.body.id} to settle` },
  );
  return { id: created.body.id as string, status: settled.status as string };
}

async function requestRefund(paymentId: string, amount: number) {
  const response = await api(
    'POST',
    `/payments/${paymentId}/refunds`,
    { amount, reason: 'requested_by_customer' },
    `r-${ulid()}`,
  );
  expect(response.status).toBe(202);
  return response.body.id as string;
}

const refundSettled = (paymentId: string, refundId: string) =>
  waitFor(
    () => refund(paymentId, refundId),
    (r) => !isSettling(r.status),
    { what: `refund ${refundId} to settle` },
  );

async function auditActions(resourceId: string, until: (actions: string[]) => boolean) {
  const events = await waitFor(
    () => system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': resourceId }).lean(),
    (found) => until(found.map((e) => e.action)),
    { what: `audit events of ${resourceId}` },
  );
  return events;
}

async function deliver(type: string, object: Json) {
  const event = stripeEventEnvelope(`evt_${ulid()}`, type, object, Math.floor(Date.now() / 1000));
  const response = await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET });
  expect(response.status).toBe(200);
  return waitFor(
    () => system.ctx.db.models.WebhookEvent.findById(event.id).lean(),
    (row) => Boolean(row && row.status !== 'received'),
    { what: `stripe event ${event.id} to be processed` },
  );
}

beforeAll(async () => {
  system = await startInProcessSystem('attention', { STRIPE_TIMEOUT_MS: '1500' });
  companyId = await createCompany(system.ctx.db, { name: 'Harbor Family Practice' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-attention-admin' });
  await useAccount(ACCOUNT_A);
});

afterAll(async () => {
  await system?.close();
});

afterEach(async () => {
  system.sim.clearScripts();
  await useAccount(ACCOUNT_A);
});

describe('once the money may have moved, never "failed" without the gateway', () => {
  it('a refund whose retry cannot reach the gateway needs attention, keeps its hold, and reconciliation settles it with Stripe’s answer', async () => {
    const paid = await pay(900);
    expect(paid.status).toBe('succeeded');
    const intentId = (await stored(paid.id))!.stripePaymentIntentId!;
    // Attempt 1 times out while Stripe makes the refund; before the retry the configuration loses its attestation.
    system.sim.script({ method: 'POST', path: '/v1/refunds', delayMs: 3_000 });
    const posts = requests('POST', /^\/v1\/refunds$/);
    const refundId = await requestRefund(paid.id, 900);
    await waitFor(
      async () => requests('POST', /^\/v1\/refunds$/),
      (count) => count > posts,
      { what: 'the first refund attempt to reach Stripe' },
    );
    await withdrawAttestation();

    const stuck = await refundSettled(paid.id, refundId);
    expect(stuck).toMatchObject({ status: 'needs_attention', attention: { code: 'gateway_not_attested' } });
    // The money stays held: nothing more can be refunded, so the payer cannot be paid twice.
    expect(await payment(paid.id)).toMatchObject({ refundReservedAmount: 900, refundableAmount: 0 });
    expect(
      (await api('POST', `/payments/${paid.id}/refunds`, { amount: 900, reason: 'duplicate' }, `r-${ulid()}`)).status,
    ).toBe(422);
    const audit = await auditActions(refundId, (actions) => actions.includes('refund.needs_attention'));
    expect(audit.find((e) => e.action === 'refund.needs_attention')?.reason).toBe('gateway_not_attested');
    expect(audit.map((e) => e.action)).not.toContain('refund.failed');

    // Its webhook cannot settle it: we never learned the id of the refund Stripe made, and metadata proves nothing.
    await waitFor(
      async () => system.sim.refundedAmount(intentId),
      (amount) => amount === 900,
      { what: 'the sim refund' },
    );
    const row = await deliver('refund.updated', {
      id: await stripeRefundIdAt(intentId, refundId),
      object: 'refund',
      amount: 900,
      currency: 'usd',
      status: 'succeeded',
      payment_intent: intentId,
      metadata: { refund_id: refundId, payment_id: paid.id },
    });
    expect(row).toMatchObject({ status: 'ignored', outcome: { reason: 'refund_unknown' } });
    // Reconciliation does, once the account that charged can be asked again: it finds the refund attempt 1 made.
    await attest();
    expect(await system.reconcileNow()).toMatchObject({ requeued: 1 });
    const settled = await waitFor(
      () => refund(paid.id, refundId),
      (r) => r.status === 'succeeded',
      { what: 'the refund to succeed' },
    );
    expect(settled.attention).toBeUndefined();
    expect(await payment(paid.id)).toMatchObject({ refundedAmount: 900, refundableAmount: 0 });
    expect(system.sim.refundedAmount(intentId)).toBe(900);
  }, 30_000);

  it('a charge whose retry cannot reach the gateway needs attention, and reconciliation settles it once it can', async () => {
    // Attempt 1's confirm times out while Stripe charges; before the retry the configuration loses its attestation.
    system.sim.script({ method: 'POST', path: /^\/v1\/payment_intents\/[^/]+\/confirm$/, delayMs: 3_000 });
    const confirms = requests('POST', /confirm$/);
    const created = await api('POST', '/payments', { ...visa, amount: 4_100 }, `attention-${ulid()}`);
    expect(created.status).toBe(202);
    await waitFor(
      async () => requests('POST', /confirm$/),
      (count) => count > confirms,
      { what: 'the first confirm' },
    );
    await withdrawAttestation();

    const stuck = await waitFor(
      () => payment(created.body.id),
      (p) => !isSettling(p.status),
      { what: 'the payment to settle' },
    );
    expect(stuck).toMatchObject({ status: 'needs_attention', attention: { code: 'gateway_not_attested' } });
    expect(stuck.failure).toBeUndefined();
    const intentId = (await stored(created.body.id))!.stripePaymentIntentId!;
    await waitFor(
      async () => system.sim.succeededChargeCount(intentId),
      (n) => n === 1,
      { what: 'the sim charge' },
    );

    // Still unreachable: reconciliation leaves it as it is.
    expect(await system.reconcileNow()).toMatchObject({ settled: 0, requeued: 0 });
    expect((await payment(created.body.id)).status).toBe('needs_attention');

    await attest();
    expect(await system.reconcileNow()).toMatchObject({ requeued: 1 });
    const settled = await waitFor(
      () => payment(created.body.id),
      (p) => p.status === 'succeeded',
      { what: 'the payment to succeed' },
    );
    expect(settled.attention).toBeUndefined();
    expect(system.sim.succeededChargeCount(intentId)).toBe(1);
    const audit = await auditActions(created.body.id, (actions) => actions.includes('payment.succeeded'));
    expect(audit.map((e) => e.action)).toEqual(
      expect.arrayContaining(['payment.needs_attention', 'payment.succeeded']),
    );
    expect(audit.map((e) => e.action)).not.toContain('payment.failed');
  }, 30_000);

  it('refunds only through the gateway account that charged: after a move to another account the refund fails, sending nothing', async () => {
    const paid = await pay(700);
    expect((await stored(paid.id))?.gatewayAccount).toEqual({
      configurationId: companyId,
      accountId: ACCOUNT_A.accountId,
      livemode: false,
    });
    await useAccount(ACCOUNT_B);
    const posts = requests('POST', /^\/v1\/refunds$/);
    const refundId = await requestRefund(paid.id, 700);
    expect(await refundSettled(paid.id, refundId)).toMatchObject({
      status: 'failed',
      failure: { code: 'gateway_account_changed' },
    });
    expect(requests('POST', /^\/v1\/refunds$/)).toBe(posts);
    expect(await payment(paid.id)).toMatchObject({ refundableAmount: 700 });

    // Back on the account that charged it (a rolled key keeps the account id), refunds go through again.
    await useAccount({ ...ACCOUNT_A, secretKey: 'sk_test_51AttentionA000001Key02' });
    const again = await requestRefund(paid.id, 700);
    expect((await refundSettled(paid.id, again)).status).toBe('succeeded');
  }, 30_000);
});

describe('reconciliation asks Stripe when a webhook is lost', () => {
  it('settles a payment left in requires_action once the payer finished 3-D Secure', async () => {
    const paid = await pay(2_300, 'pm_card_threeDSecure2Required');
    expect(paid.status).toBe('requires_action');
    const intentId = (await stored(paid.id))!.stripePaymentIntentId!;

    // Younger than the configured age: not asked about.
    expect(await system.reconcileNow(60_000)).toMatchObject({ asked: 0 });
    // Old enough, but the payer has not finished: asked, nothing changes.
    expect(await system.reconcileNow()).toMatchObject({ settled: 0 });
    expect((await payment(paid.id)).status).toBe('requires_action');

    system.sim.finishAction(intentId, 'succeeded');
    expect(await system.reconcileNow()).toMatchObject({ settled: 1 });
    expect(await payment(paid.id)).toMatchObject({ status: 'succeeded' });
    const audit = await auditActions(paid.id, (actions) => actions.includes('payment.succeeded'));
    expect(audit.find((e) => e.action === 'payment.succeeded')?.actor).toMatchObject({ id: 'gateway-reconcile' });
  });

  it('records a failed 3-D Secure as failed, with Stripe’s reason', async () => {
    const paid = await pay(2_400, 'pm_card_threeDSecure2Required');
    system.sim.finishAction((await stored(paid.id))!.stripePaymentIntentId!, 'failed');
    expect(await system.reconcileNow()).toMatchObject({ settled: 1 });
    expect(await payment(paid.id)).toMatchObject({
      status: 'failed',
      failure: { code: 'payment_intent_authentication_failure' },
    });
  });

  it('settles a pending refund once the bank settled it', async () => {
    const paid = await pay(1_500, 'pm_card_pendingRefund');
    const refundId = await requestRefund(paid.id, 1_500);
    expect((await refundSettled(paid.id, refundId)).status).toBe('pending');
    const stripeRefundId = (await system.ctx.db.models.Refund.findById(refundId).lean())!.stripeRefundId!;

    expect(await system.reconcileNow()).toMatchObject({ settled: 0 });
    system.sim.settleRefund(stripeRefundId, 'succeeded');
    expect(await system.reconcileNow()).toMatchObject({ settled: 1 });
    expect(await refund(paid.id, refundId)).toMatchObject({ status: 'succeeded' });
    expect(await payment(paid.id)).toMatchObject({ refundedAmount: 1_500, refundableAmount: 0 });
    await auditActions(refundId, (actions) => actions.includes('refund.succeeded'));
  });
});

/** The id Stripe gave the refund, from its list for the PaymentIntent (as the worker and reconciliation find it). */
async function stripeRefundIdAt(intentId: string, refundId: string): Promise<string> {
  const response = await fetch(`${system.sim.url}/v1/refunds?payment_intent=${intentId}`, {
    headers: { authorization: `Bearer ${ACCOUNT_A.secretKey}` },
  });
  const list = (await response.json()) as { data: Json[] };
  return list.data.find((r) => r.metadata?.refund_id === refundId)!.id;
}
