import type { Queue } from 'bullmq';
import { ulid } from 'ulid';
import type { Role } from '../../domain/access-policy';
import { refundIdFor, refundRequestHash } from '../../domain/refund-request';
import { createCompany } from '../../models/companies';
import { holdRefund, refundTotals } from '../../models/refund-ledger.model';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment, insertRefund } from '../support/records';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';
import { refundJobId } from '../../queues/refunds.queue';

let system: InProcessSystem;
let companyId: string;
let admin: string;
let refundsQueue: Queue;

const WEBHOOK_SECRET = 'whsec_RefundsWebhookSecret0001';
const CUSTOMER = 'cus_RefundPatientRef01';
const visa = { currency: 'usd', customer: CUSTOMER, paymentMethod: 'pm_card_visa' };

type Json = Record<string, any>;

async function api(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; key?: string; url?: string } = {},
) {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? admin}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.key) headers['idempotency-key'] = options.key;
  const response = await fetch(`${options.url ?? system.url}${path}`, {
    method,
    headers,
    ...(options.body !== undefined
      ? { body: typeof options.body === 'string' ? options.body : JSON.stringify(options.body) }
      : {}),
  });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Json };
}

const newKey = () => `refund-key-${ulid()}`;
const paymentPath = (paymentId: string, company = companyId) => `/v1/companies/${company}/payments/${paymentId}`;

/** A payment charged through the whole path (sim → stripe-mock) and settled. */
async function charge(amount: number, extra: Json = {}, company = companyId, token = admin) {
  const created = await api('POST', `/v1/companies/${company}/payments`, {
    token,
    key: newKey(),
    body: { ...visa, amount, ...extra },
  });
  expect(created.status).toBe(202);
  const paymentId = created.body.id as string;
  const settled = await waitFor(
    () => api('GET', paymentPath(paymentId, company), { token }),
    (r) => !['queued', 'processing'].includes(r.body.status),
    { what: `payment ${paymentId} to settle` },
  );
  const stored = await system.ctx.db.models.Payment.findById(paymentId).lean();
  return { paymentId, status: settled.body.status as string, intentId: stored?.stripePaymentIntentId ?? '' };
}

function requestRefund(paymentId: string, body: unknown, options: { key?: string; token?: string; url?: string } = {}) {
  return api('POST', `${paymentPath(paymentId)}/refunds`, {
    key: options.key ?? newKey(),
    body,
    token: options.token,
    url: options.url,
  });
}

async function refundSettled(
  paymentId: string,
  refundId: string,
  until = (status: string) => status !== 'queued' && status !== 'processing',
) {
  const result = await waitFor(
    () => api('GET', `${paymentPath(paymentId)}/refunds/${refundId}`),
    (r) => until(r.body.status),
    { what: `refund ${refundId} to settle` },
  );
  return result.body;
}

const payment = async (paymentId: string) => (await api('GET', paymentPath(paymentId))).body;
const refundPosts = () => system.sim.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');
const ledger = (paymentId: string) => refundTotals(system.ctx.db.models.RefundLedger, paymentId);
const ledgerEntries = (paymentId: string) =>
  system.ctx.db.models.RefundLedger.find({ paymentId }).sort({ seq: 1 }).lean();

async function auditEvents(resourceId: string, until: (actions: string[]) => boolean) {
  return waitFor(
    () => system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': resourceId }).lean(),
    (events) => until(events.map((e) => e.action)),
    { what: `audit events of ${resourceId}` },
  );
}

async function deliver(type: string, object: Json, created = Math.floor(Date.now() / 1000)) {
  const event = stripeEventEnvelope(`evt_${ulid()}`, type, object, created);
  const response = await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET });
  expect(response.status).toBe(200);
  const row = await waitFor(
    () => system.ctx.db.models.WebhookEvent.findById(event.id).lean(),
    (r) => Boolean(r && r.status !== 'received'),
    { what: `stripe event ${event.id} to be processed` },
  );
  return row!;
}

async function stripeRefundObject(refundId: string, status: string, extra: Json = {}) {
  const stored = await system.ctx.db.models.Refund.findById(refundId).lean();
  return {
    id: stored?.stripeRefundId ?? `re_${ulid()}`,
    object: 'refund',
    amount: stored?.amount,
    currency: 'usd',
    status,
    metadata: { refund_id: refundId, payment_id: stored?.paymentId },
    ...extra,
  };
}

beforeAll(async () => {
  system = await startInProcessSystem('refunds', { STRIPE_TIMEOUT_MS: '1500' });
  companyId = await createCompany(system.ctx.db, { name: 'Lakeside Pediatrics' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51LakesideSecretKey01',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
  refundsQueue = system.ctx.queues.refunds;
});

afterAll(async () => {
  expect(system.ctx.logs.text).not.toContain(WEBHOOK_SECRET);
  await system.close();
});

beforeEach(() => system.sim.clearScripts());

describe('refunding a payment', () => {
  it('refunds it in full: 202 with a Location, one Stripe refund with opaque ids only, audited', async () => {
    const paid = await charge(4_200);
    expect(paid.status).toBe('succeeded');
    const response = await requestRefund(paid.paymentId, { amount: 4_200, reason: 'requested_by_customer' });
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ id: expect.stringMatching(/^ref_[0-9A-Z]{26}$/), status: 'queued' });
    const refundId = response.body.id as string;
    expect(response.headers.get('location')).toBe(`${paymentPath(paid.paymentId)}/refunds/${refundId}`);

    const refund = await refundSettled(paid.paymentId, refundId);
    expect(refund).toMatchObject({
      id: refundId,
      paymentId: paid.paymentId,
      status: 'succeeded',
      amount: 4_200,
      currency: 'usd',
      reason: 'requested_by_customer',
    });
    expect(await payment(paid.paymentId)).toMatchObject({
      status: 'succeeded',
      refundedAmount: 4_200,
      refundReservedAmount: 4_200,
      refundableAmount: 0,
    });

    const posts = refundPosts().filter((r) => r.idempotencyKey === refundId);
    expect(posts).toHaveLength(1);
    expect(posts[0]!.form).toEqual({
      payment_intent: paid.intentId,
      amount: '4200',
      reason: 'requested_by_customer',
      metadata: { refund_id: refundId, payment_id: paid.paymentId },
    });
    expect(system.sim.refundedAmount(paid.intentId)).toBe(4_200);

    const list = await api('GET', `${paymentPath(paid.paymentId)}/refunds`);
    expect(list.body.items.map((r: Json) => r.id)).toEqual([refundId]);

    const audit = await auditEvents(refundId, (a) => a.includes('refund.requested') && a.includes('refund.succeeded'));
    expect(audit.find((e) => e.action === 'refund.requested')).toMatchObject({
      actor: { id: 'usr-admin' },
      reason: 'requested_by_customer',
      resource: { type: 'refund', id: refundId },
    });
    expect(audit.filter((e) => e.action === 'refund.succeeded')).toHaveLength(1);
    expect(JSON.stringify(audit)).not.toContain(CUSTOMER);
  });

  it('refunds in parts up to the amount, then refuses more with 422 and sends nothing', async () => {
    const paid = await charge(5_000);
    for (const amount of [1_500, 2_000]) {
      const response = await requestRefund(paid.paymentId, { amount, reason: 'duplicate' });
      expect(response.status).toBe(202);
      expect((await refundSettled(paid.paymentId, response.body.id)).status).toBe('succeeded');
    }
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 3_500, refundableAmount: 1_500 });

    const before = { posts: refundPosts().length, ledger: await ledger(paid.paymentId) };
    const key = newKey();
    const tooMuch = await requestRefund(paid.paymentId, { amount: 1_501, reason: 'duplicate' }, { key });
    expect(tooMuch.status).toBe(422);
    expect(tooMuch.body.error.code).toBe('refund_exceeds_captured');
    expect(tooMuch.body.error.message).toContain('1500 of 5000');
    expect(refundPosts().length).toBe(before.posts);
    expect(await ledger(paid.paymentId)).toEqual(before.ledger);
    expect(await system.ctx.db.models.Refund.countDocuments({ idempotencyKey: key })).toBe(0);

    const rest = await requestRefund(paid.paymentId, { amount: 1_500, reason: 'duplicate' });
    expect((await refundSettled(paid.paymentId, rest.body.id)).status).toBe('succeeded');
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 5_000, refundableAmount: 0 });
    expect(system.sim.refundedAmount(paid.intentId)).toBe(5_000);
  });

  it('accepts only the refunds that fit when 10 race for more than the amount', async () => {
    const paid = await charge(2_000);
    const responses = await Promise.all(
      Array.from({ length: 10 }, () => requestRefund(paid.paymentId, { amount: 300, reason: 'requested_by_customer' })),
    );

    const accepted = responses.filter((r) => r.status === 202);
    const refused = responses.filter((r) => r.status === 422);
    expect(accepted).toHaveLength(6);
    expect(refused).toHaveLength(4);
    for (const r of refused) expect(r.body.error.code).toBe('refund_exceeds_captured');
    // The ledger's whole history: the reserved total never went past the amount, not even for a moment.
    const history = await ledgerEntries(paid.paymentId);
    expect(history.filter((e) => e.kind === 'hold')).toHaveLength(6);
    expect(Math.max(...history.map((e) => e.reserved))).toBe(1_800);

    for (const r of accepted) expect((await refundSettled(paid.paymentId, r.body.id)).status).toBe('succeeded');
    expect(await payment(paid.paymentId)).toMatchObject({
      refundedAmount: 1_800,
      refundReservedAmount: 1_800,
      refundableAmount: 200,
    });
    expect(await system.ctx.db.models.Refund.countDocuments({ paymentId: paid.paymentId })).toBe(6);
    expect(system.sim.refundedAmount(paid.intentId)).toBe(1_800);
  });

  it('treats the same Idempotency-Key and body as one refund with one Stripe call; another body is a 422', async () => {
    const paid = await charge(3_000);
    const key = newKey();
    const body = { amount: 1_000, reason: 'duplicate' };
    const first = await Promise.all([
      requestRefund(paid.paymentId, body, { key }),
      requestRefund(paid.paymentId, body, { key }),
    ]);
    expect(first.map((r) => r.status)).toEqual([202, 202]);
    const refundId = first[0]!.body.id as string;
    expect(first[1]!.body.id).toBe(refundId);
    await refundSettled(paid.paymentId, refundId);

    const again = await requestRefund(paid.paymentId, body, { key });
    expect(again.status).toBe(202);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual({ id: refundId, status: 'succeeded' });

    const conflict = await requestRefund(paid.paymentId, { amount: 1_001, reason: 'duplicate' }, { key });
    expect(conflict.status).toBe(422);
    expect(conflict.body.error.code).toBe('idempotency_key_conflict');

    expect(await system.ctx.db.models.Refund.countDocuments({ idempotencyKey: key })).toBe(1);
    expect(refundPosts().filter((r) => r.path === '/v1/refunds' && r.idempotencyKey === refundId)).toHaveLength(1);
    expect(system.sim.refundedAmount(paid.intentId)).toBe(1_000);
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 1_000, refundReservedAmount: 1_000 });
  });

  it('refuses to refund a payment that did not succeed (422), sending and recording nothing', async () => {
    const declined = await charge(1_200, { paymentMethod: 'pm_card_chargeDeclined' });
    expect(declined.status).toBe('failed');
    const threeDs = await charge(1_200, { paymentMethod: 'pm_card_threeDSecure2Required' });
    expect(threeDs.status).toBe('requires_action');
    const queued = await insertPayment(system.ctx.db.models, { companyId, status: 'queued', attempts: 0 });
    const posts = refundPosts().length;
    for (const paymentId of [declined.paymentId, threeDs.paymentId, queued._id]) {
      const response = await requestRefund(paymentId, { amount: 100, reason: 'requested_by_customer' });
      expect(response.status).toBe(422);
      expect(response.body.error.code).toBe('payment_not_refundable');
      expect(await ledgerEntries(paymentId)).toEqual([]);
      expect(await system.ctx.db.models.Refund.countDocuments({ paymentId })).toBe(0);
    }
    expect(refundPosts().length).toBe(posts);
  });

  it('answers 400 naming the field for a bad request, and 404 for another company’s payment', async () => {
    const paid = await charge(900);
    const noKey = await api('POST', `${paymentPath(paid.paymentId)}/refunds`, {
      body: { amount: 100, reason: 'duplicate' },
    });
    expect(noKey.status).toBe(400);
    expect(noKey.body.error.code).toBe('idempotency_key_required');
    const cases: Array<[unknown, string]> = [
      [{ amount: '100', reason: 'duplicate' }, 'amount'],
      [{ amount: 100 }, 'reason'],
      [{ amount: 100, reason: 'duplicate', diagnosis: 'J45.909' }, 'diagnosis'],
      ['{"amount": 1', '(body)'],
    ];
    for (const [body, field] of cases) {
      const response = await requestRefund(paid.paymentId, body);
      expect(response.status).toBe(400);
      if (field !== '(body)') expect(response.body.error.details.map((d: Json) => d.field)).toContain(field);
    }
    const other = await createCompany(system.ctx.db, { name: 'Other Clinic' });
    const otherAdmin = await system.token(other, ['company_admin']);
    const foreign = await api('POST', `/v1/companies/${other}/payments/${paid.paymentId}/refunds`, {
      token: otherAdmin,
      key: newKey(),
      body: { amount: 100, reason: 'duplicate' },
    });
    expect(foreign.status).toBe(404);
    expect(foreign.body.error.code).toBe('payment_not_found');
    expect(await ledgerEntries(paid.paymentId)).toEqual([]);
  });

  it('enforces roles and offices: a clerk may not refund, a manager only for their own office', async () => {
    const paid = await charge(1_000, { officeId: 'off_1' });
    const as = async (roles: Role[], officeIds?: string[]) =>
      requestRefund(
        paid.paymentId,
        { amount: 100, reason: 'duplicate' },
        {
          token: await system.token(companyId, roles, { officeIds, subject: `usr-${roles[0]}` }),
        },
      );
    const clerk = await as(['billing_clerk'], ['off_1']);
    expect(clerk.status).toBe(403);
    expect(clerk.body.error.code).toBe('permission_missing');
    const otherOffice = await as(['office_manager'], ['off_2']);
    expect(otherOffice.status).toBe(403);
    expect(otherOffice.body.error.code).toBe('office_out_of_scope');
    expect(await ledgerEntries(paid.paymentId)).toEqual([]);

    const ownOffice = await as(['office_manager'], ['off_1']);
    expect(ownOffice.status).toBe(202);
    // Reading refunds needs payments:read only, within the office.
    const clerkToken = await system.token(companyId, ['billing_clerk'], { officeIds: ['off_1'] });
    const listed = await api('GET', `${paymentPath(paid.paymentId)}/refunds`, { token: clerkToken });
    expect(listed.status).toBe(200);
    expect(listed.body.items).toEqual([expect.objectContaining({ id: ownOffice.body.id, officeId: 'off_1' })]);
    const outsider = await system.token(companyId, ['billing_clerk'], { officeIds: ['off_2'] });
    expect(
      (await api('GET', `${paymentPath(paid.paymentId)}/refunds/${ownOffice.body.id}`, { token: outsider })).status,
    ).toBe(403);
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'access.denied',
          permission: 'refunds:create',
        }).lean(),
      (events) => events.length >= 2,
      { what: 'refund denials to be audited' },
    );
  });
});

describe('when Stripe says no, or is away', () => {
  it('fails the refund with gateway_not_attested, calling nothing, when the configuration lost its attestation', async () => {
    const paid = await charge(800);
    await system.ctx.db.models.Company.updateOne({ _id: companyId }, { $unset: { 'payment_info.compliance': 1 } });
    try {
      const posts = refundPosts().length;
      const response = await requestRefund(paid.paymentId, { amount: 800, reason: 'requested_by_customer' });
      expect(response.status).toBe(202);
      const refund = await refundSettled(paid.paymentId, response.body.id);
      expect(refund).toMatchObject({ status: 'failed', failure: { code: 'gateway_not_attested' } });
      expect(refundPosts().length).toBe(posts);
      // The money it held is free again.
      expect(await payment(paid.paymentId)).toMatchObject({ refundReservedAmount: 0, refundableAmount: 800 });
      const audit = await auditEvents(response.body.id, (a) => a.includes('refund.failed'));
      expect(audit.find((e) => e.action === 'refund.failed')?.reason).toBe('gateway_not_attested');
    } finally {
      await api('POST', `/v1/companies/${companyId}/payment-config/attestation`, {
        body: { status: 'exempt_1179', rationale: 'Stripe receives amounts and opaque ids only (HIPAA section 1179).' },
      });
    }
  });

  it('retries through a Stripe outage and refunds once when it is back', async () => {
    const paid = await charge(2_500);
    system.sim.script({ method: 'POST', path: '/v1/refunds', status: 503, times: 2 });
    const response = await requestRefund(paid.paymentId, { amount: 2_500, reason: 'requested_by_customer' });
    const refund = await refundSettled(paid.paymentId, response.body.id);
    expect(refund.status).toBe('succeeded');
    expect((await system.ctx.db.models.Refund.findById(response.body.id).lean())?.attempts).toBe(3);
    expect(system.sim.refundedAmount(paid.intentId)).toBe(2_500);
  }, 30_000);

  it('refunds once when an attempt timed out after Stripe already made the refund', async () => {
    const paid = await charge(1_700);
    // Held well past the client's timeout: Stripe (the sim) still makes the refund. The first retry finds that
    // request still running (409 for the same idempotency key), which is retried too, not taken as a refusal.
    system.sim.script({ method: 'POST', path: '/v1/refunds', delayMs: 4_000 });
    const response = await requestRefund(paid.paymentId, { amount: 1_700, reason: 'duplicate' });
    const refund = await refundSettled(paid.paymentId, response.body.id);
    expect(refund.status).toBe('succeeded');
    expect((await system.ctx.db.models.Refund.findById(response.body.id).lean())!.attempts).toBeGreaterThanOrEqual(2);
    expect(system.sim.refundedAmount(paid.intentId)).toBe(1_700);
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 1_700 });
  }, 30_000);

  it('fails at once, with Stripe’s reason, when Stripe refuses the refund, and frees the amount', async () => {
    const paid = await charge(1_100);
    system.sim.script({
      method: 'POST',
      path: '/v1/refunds',
      status: 400,
      body: {
        error: { type: 'invalid_request_error', code: 'charge_disputed', message: 'This charge is disputed.' },
      },
    });
    const response = await requestRefund(paid.paymentId, { amount: 600, reason: 'requested_by_customer' });
    const refund = await refundSettled(paid.paymentId, response.body.id);
    expect(refund).toMatchObject({ status: 'failed', failure: { code: 'charge_disputed' } });
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 0, refundReservedAmount: 0 });
    const job = await waitFor(
      () => refundsQueue.getJob(refundJobId(response.body.id)),
      (j) => Boolean(j?.finishedOn),
      { what: 'refund job to finish' },
    );
    expect(job?.attemptsMade).toBe(1);
    expect(await job?.getState()).toBe('failed');
  });
});

describe('refunds and Stripe webhooks', () => {
  it('moves a pending refund with refund.updated, and a late pending does not undo its success', async () => {
    const paid = await charge(3_300, { paymentMethod: 'pm_card_pendingRefund' });
    const response = await requestRefund(paid.paymentId, { amount: 1_300, reason: 'requested_by_customer' });
    const refundId = response.body.id as string;
    expect((await refundSettled(paid.paymentId, refundId)).status).toBe('pending');
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 0, refundReservedAmount: 1_300 });

    const now = Math.floor(Date.now() / 1000);
    const succeeded = await deliver('refund.updated', await stripeRefundObject(refundId, 'succeeded'), now);
    expect(succeeded).toMatchObject({
      status: 'applied',
      outcome: { reason: 'refund_succeeded', paymentId: paid.paymentId, resource: { type: 'refund', id: refundId } },
    });
    const late = await deliver('refund.updated', await stripeRefundObject(refundId, 'pending'), now - 30);
    expect(late).toMatchObject({ status: 'ignored', outcome: { reason: 'stale_transition' } });
    expect((await refundSettled(paid.paymentId, refundId)).status).toBe('succeeded');
    expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 1_300, refundReservedAmount: 1_300 });
    await auditEvents(refundId, (a) => a.includes('refund.succeeded'));
  });

  it('ends a shuffled sequence of refund events in the final status, whatever the order', async () => {
    for (let run = 0; run < 3; run += 1) {
      const paid = await charge(900, { paymentMethod: 'pm_card_pendingRefund' });
      const response = await requestRefund(paid.paymentId, { amount: 900, reason: 'duplicate' });
      const refundId = response.body.id as string;
      await refundSettled(paid.paymentId, refundId);
      const events = [
        await stripeRefundObject(refundId, 'requires_action'),
        await stripeRefundObject(refundId, 'pending'),
        await stripeRefundObject(refundId, 'succeeded'),
      ].sort(() => Math.random() - 0.5);
      for (const object of events) await deliver('refund.updated', object);
      expect((await refundSettled(paid.paymentId, refundId)).status).toBe('succeeded');
      expect(await payment(paid.paymentId)).toMatchObject({ refundedAmount: 900, refundableAmount: 0 });
    }
  });

  it('takes a refund back when Stripe reports it failed after it succeeded', async () => {
    const paid = await charge(2_000);
    const response = await requestRefund(paid.paymentId, { amount: 2_000, reason: 'requested_by_customer' });
    const refundId = response.body.id as string;
    expect((await refundSettled(paid.paymentId, refundId)).status).toBe('succeeded');
    const failed = await deliver(
      'refund.updated',
      await stripeRefundObject(refundId, 'failed', { failure_reason: 'expired_or_canceled_card' }),
    );
    expect(failed.status).toBe('applied');
    expect(await refundSettled(paid.paymentId, refundId)).toMatchObject({
      status: 'failed',
      failure: { code: 'expired_or_canceled_card' },
    });
    expect(await payment(paid.paymentId)).toMatchObject({
      refundedAmount: 0,
      refundReservedAmount: 0,
      refundableAmount: 2_000,
    });
    // Failed is final: a late success is ignored.
    const late = await deliver('refund.updated', await stripeRefundObject(refundId, 'succeeded'));
    expect(late.outcome?.reason).toBe('stale_transition');
    const audit = await auditEvents(refundId, (a) => a.includes('refund.failed'));
    expect(audit.find((e) => e.action === 'refund.failed')?.reason).toBe('expired_or_canceled_card');
  });

  it('records a refund made in the Stripe dashboard (charge.refunded), so ours cannot exceed what is left', async () => {
    const paid = await charge(3_000);
    const charged = (refunded: number) => ({
      id: `ch_${ulid()}`,
      object: 'charge',
      amount: 3_000,
      amount_refunded: refunded,
      refunded: refunded === 3_000,
      payment_intent: paid.intentId,
      metadata: {},
    });
    const now = Math.floor(Date.now() / 1000);
    const row = await deliver('charge.refunded', charged(1_000), now);
    expect(row).toMatchObject({
      status: 'applied',
      outcome: { reason: 'refunded_amount_recorded', paymentId: paid.paymentId },
    });
    expect(await payment(paid.paymentId)).toMatchObject({
      refundedAmount: 0,
      gatewayRefundedAmount: 1_000,
      refundableAmount: 2_000,
    });
    // An older report, delivered late, does not overwrite it.
    expect((await deliver('charge.refunded', charged(500), now - 60)).outcome?.reason).toBe('stale_transition');
    expect((await payment(paid.paymentId)).gatewayRefundedAmount).toBe(1_000);

    const posts = refundPosts().length;
    const tooMuch = await requestRefund(paid.paymentId, { amount: 2_001, reason: 'duplicate' });
    expect(tooMuch.status).toBe(422);
    expect(refundPosts().length).toBe(posts);
    const rest = await requestRefund(paid.paymentId, { amount: 2_000, reason: 'duplicate' });
    expect((await refundSettled(paid.paymentId, rest.body.id)).status).toBe('succeeded');

    const audit = await auditEvents(paid.paymentId, (a) => a.includes('payment.refunded_amount_reported'));
    expect(audit.find((e) => e.action === 'payment.refunded_amount_reported')).toMatchObject({
      reason: 'exceeds_our_refunds',
      changes: [{ field: 'gatewayRefundedAmount', before: null, after: '1000' }],
    });
  });

  it('ignores refund events for refunds that are not ours or belong to another company', async () => {
    const dashboard = await deliver('refund.updated', {
      id: `re_${ulid()}`,
      object: 'refund',
      status: 'succeeded',
      metadata: {},
    });
    expect(dashboard).toMatchObject({ status: 'ignored', outcome: { reason: 'refund_not_ours' } });

    const other = await createCompany(system.ctx.db, { name: 'Elsewhere Clinic' });
    const foreignRefund = await insertRefund(system.ctx.db.models, {
      _id: refundIdFor(other, newKey(), 'b'.repeat(64)),
      companyId: other,
      paymentId: `pay_${ulid()}`,
      amount: 100,
      reason: 'duplicate',
      status: 'pending',
      requestedBy: { type: 'service', id: 'svc-other' },
      attempts: 1,
    });
    const foreign = await deliver('refund.updated', {
      id: `re_${ulid()}`,
      object: 'refund',
      status: 'failed',
      metadata: { refund_id: foreignRefund._id },
    });
    expect(foreign).toMatchObject({ status: 'ignored', outcome: { reason: 'company_mismatch' } });
    expect((await system.ctx.db.models.Refund.findById(foreignRefund._id).lean())?.status).toBe('pending');
  });
});

describe('an accepted intent is accepted', () => {
  it('a refund recorded while Redis is down answers 202 (not 503); the sweep sends it once and refund.requested is audited', async () => {
    const paid = await charge(3_100);
    expect(paid.status).toBe('succeeded');
    const key = newKey();
    const body = { amount: 3_100, reason: 'requested_by_customer' };
    const response = await system.withRedisDownApi((url) => requestRefund(paid.paymentId, body, { key, url }));
    // Recorded: a 5xx would tell the client "not done", and a retry with a new key would refund twice.
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ id: expect.stringMatching(/^ref_/), status: 'queued' });
    const refundId = response.body.id as string;
    expect(response.headers.get('location')).toBe(`${paymentPath(paid.paymentId)}/refunds/${refundId}`);
    expect(await refundsQueue.getJob(refundJobId(refundId))).toBeUndefined();

    const sweep = await system.sweepNow();
    expect(sweep.requeued).toBeGreaterThanOrEqual(1);
    expect(await refundSettled(paid.paymentId, refundId)).toMatchObject({ id: refundId, status: 'succeeded' });
    expect(refundPosts().filter((r) => (r.form.metadata as Json | undefined)?.refund_id === refundId)).toHaveLength(1);

    // The same key and body is the same refund, and nothing more can be refunded.
    const retry = await requestRefund(paid.paymentId, body, { key });
    expect(retry.body).toEqual({ id: refundId, status: 'succeeded' });
    expect((await requestRefund(paid.paymentId, { amount: 1, reason: 'duplicate' })).status).toBe(422);

    // The worker emitted the request event the ingress could not queue.
    const audit = await auditEvents(refundId, (a) => a.includes('refund.requested') && a.includes('refund.succeeded'));
    expect(audit.filter((e) => e.action === 'refund.requested')).toHaveLength(1);
    expect(audit.find((e) => e.action === 'refund.requested')).toMatchObject({ actor: { id: 'usr-admin' } });
  });
});

describe('crashes lose no reservation', () => {
  it('completes a retried request whose first attempt reserved the money and stopped before recording the refund', async () => {
    const paid = await charge(1_500);
    const key = newKey();
    const body = { amount: 1_500, reason: 'duplicate' as const };
    const refundId = refundIdFor(companyId, key, refundRequestHash(paid.paymentId, body));
    const stored = await system.ctx.db.models.Payment.findById(paid.paymentId).lean();
    // What the first attempt did before it died.
    const held = await holdRefund(system.ctx.db.models.RefundLedger, stored!, {
      refundId,
      amount: 1_500,
      unrecorded: true,
    });
    expect(held.result).toBe('held');

    const retry = await requestRefund(paid.paymentId, body, { key });
    expect(retry.status).toBe(202);
    expect(retry.body.id).toBe(refundId);
    expect((await refundSettled(paid.paymentId, refundId)).status).toBe('succeeded');
    expect(await ledger(paid.paymentId)).toEqual({ reserved: 1_500, refunded: 1_500 });
    expect((await ledgerEntries(paid.paymentId)).map((e) => [e.kind, e.subject, e.unrecorded])).toEqual([
      ['hold', refundId, undefined],
      ['confirm', refundId, undefined],
    ]);
    expect(system.sim.refundedAmount(paid.intentId)).toBe(1_500);
  });

  it('the outbox sweep releases a hold that never got its refund, and queues a refund whose enqueue was lost', async () => {
    const paid = await charge(2_000);
    const stored = await system.ctx.db.models.Payment.findById(paid.paymentId).lean();
    const orphan = refundIdFor(companyId, newKey(), 'c'.repeat(64));
    await holdRefund(system.ctx.db.models.RefundLedger, stored!, { refundId: orphan, amount: 700, unrecorded: true });

    // A refund recorded (with its hold) whose job never reached Redis.
    const lost = refundIdFor(companyId, newKey(), 'd'.repeat(64));
    await holdRefund(system.ctx.db.models.RefundLedger, stored!, { refundId: lost, amount: 500, unrecorded: false });
    await insertRefund(system.ctx.db.models, {
      _id: lost,
      companyId,
      paymentId: paid.paymentId,
      reason: 'duplicate',
      status: 'queued',
      requestedBy: { type: 'user', id: 'usr-admin' },
      requestHash: 'd'.repeat(64),
    });
    expect(await payment(paid.paymentId)).toMatchObject({ refundReservedAmount: 1_200, refundableAmount: 800 });

    await system.sweepNow();
    expect((await refundSettled(paid.paymentId, lost)).status).toBe('succeeded');
    expect(await payment(paid.paymentId)).toMatchObject({
      refundedAmount: 500,
      refundReservedAmount: 500,
      refundableAmount: 1_500,
    });
    const history = (await ledgerEntries(paid.paymentId)).map((e) => `${e.kind} ${e.subject}`);
    expect(history.slice(0, 2)).toEqual([`hold ${orphan}`, `hold ${lost}`]);
    expect(history.slice(2).sort()).toEqual([`confirm ${lost}`, `release ${orphan}`]);
  });
});
