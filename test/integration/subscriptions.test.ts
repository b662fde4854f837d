import { Queue } from 'bullmq';
import { ulid } from 'ulid';
import { requestRefund } from '../../application/refunds/request-refund';
import {
  changeSubscription,
  manageDepsFor,
  resumeCollectionForPayer,
} from '../../application/subscriptions/manage-subscriptions';
import { renewSubscription, type RenewDeps } from '../../application/subscriptions/renew-subscription';
import { requestClockAdvance, runClockAdvance } from '../../application/subscriptions/test-clocks';
import { sweepRenewals } from '../../application/subscriptions/sweep-renewals';
import { confirmSetupIntentLocally } from '../../devtools/confirm-setup-intent';
import { createCompany } from '../../models/companies';
import { periodId } from '../../models/subscription.model';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { enqueueCharge } from '../../queues/charges.queue';
import { enqueueRefund } from '../../queues/refunds.queue';
import type { RenewalJob } from '../../queues/renewals.queue';
import { waitFor } from '../support/harness';
import { insertSavedCard, trailOf } from '../support/records';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

/** Issue 13: plans, subscriptions, renewals exactly once per period, dunning, test clocks, fairness. */
let system: InProcessSystem;
let companyId: string;
let admin: string;

type Json = Record<string, any>;
const DAY = 24 * 60 * 60 * 1000;

async function api(method: string, path: string, body?: unknown, options: { token?: string; company?: string } = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? admin}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method === 'POST') headers['idempotency-key'] = `sub-test-${ulid()}`;
  const response = await fetch(`${system.url}/v1/companies/${options.company ?? companyId}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

async function plan(body: Json = {}) {
  const created = await api('POST', '/plans', {
    category: 'membership',
    name: 'Gold membership',
    amount: 3_000,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    ...body,
  });
  expect(created.status).toBe(201);
  return created.body.id as string;
}

/** A payer's saved card, as `setup_intent.succeeded` stores it. */
async function savedMethod(customerRef: string, paymentMethod = 'pm_card_visa', company = companyId) {
  return insertSavedCard(system.ctx.db, { companyId: company, customerRef, paymentMethod, savedBy: `test-${ulid()}` });
}

async function clock(at: string) {
  const created = await api('POST', '/test-clocks', { frozenTime: at });
  expect(created.status).toBe(201);
  return created.body.id as string;
}

async function advance(clockId: string, to: string) {
  const started = await api('POST', `/test-clocks/${clockId}/advance`, { frozenTime: to });
  expect(started.status).toBe(202);
  await waitFor(
    () => api('GET', `/test-clocks/${clockId}`),
    (r) => r.body.status === 'ready',
    { what: `test clock ${clockId} to reach ${to}`, timeoutMs: 60_000 },
  );
}

async function subscribe(body: Json) {
  const created = await api('POST', '/subscriptions', body);
  expect(created).toMatchObject({ status: 201 });
  return created.body as Json;
}

const subscription = async (id: string) => (await api('GET', `/subscriptions/${id}`)).body;
const payments = (subscriptionId: string) =>
  system.ctx.db.models.Payment.find({ 'subscription.subscriptionId': subscriptionId }).sort({ createdAt: 1 }).lean();
const periods = (subscriptionId: string) =>
  system.ctx.db.models.SubscriptionPeriod.find({ subscriptionId }).sort({ start: 1 }).lean();
/** The amounts of a subscription's succeeded payments, in order. */
const succeededAmounts = async (id: string) =>
  (await payments(id)).filter((p) => p.status === 'succeeded').map((p) => p.amount);
/** Waits until the subscription has `count` succeeded payments (its charges are asynchronous). */
const chargesReach = (id: string, count: number, what: string) =>
  waitFor(
    () => succeededAmounts(id),
    (amounts) => amounts.length === count,
    { what },
  );
const settledStatus = (id: string, done: (status: string) => boolean) =>
  waitFor(
    () => subscription(id),
    (s) => done(s.status),
    { what: `subscription ${id}` },
  );

/** A subscription of `payer` on a new test clock at `at`, its first period paid. */
async function subscribedOnClock(at: string, payer: string, planBody: Json = {}) {
  const clockId = await clock(at);
  const paymentMethodId = await savedMethod(payer);
  const sub = await subscribe({
    planId: await plan(planBody),
    customerRef: payer,
    paymentMethodId,
    testClockId: clockId,
  });
  await settledStatus(sub.id, (status) => status === 'active');
  return { clockId, sub, paymentMethodId };
}

function renewDeps(): RenewDeps {
  const { ctx } = system;
  return {
    models: ctx.db.models,
    enqueueCharge: (payment) =>
      enqueueCharge(ctx.queues.charges, { paymentId: payment._id, requestId: payment.requestId }),
    enqueueAudit: (event) => enqueueAuditEvent(ctx.queues.audit, event),
    logger: ctx.logger,
  };
}

beforeAll(async () => {
  // Dozens of subscriptions polled through one company's api within a minute: above its default rate limits, which
  // test/integration/abuse-limits.test.ts is about.
  system = await startInProcessSystem('subscriptions', {
    RATE_LIMIT_PER_MINUTE: '100000',
    RATE_LIMIT_PER_SOURCE_PER_MINUTE: '100000',
  });
  companyId = await createCompany(system.ctx.db, { name: 'Riverside Family Medicine' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-sub-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51RiversideSubscriptions1',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
  const settings = await api('PUT', '/billing-settings', {
    timeZone: 'America/New_York',
    dunning: { retryDelaysDays: [1, 3, 5, 7], finalState: 'unpaid' },
  });
  expect(settings.status).toBe(200);
}, 60_000);

afterAll(async () => {
  await system?.close();
});

const WEBHOOK_SECRET = 'whsec_RiversideSubscriptions01';
const DEFAULT_DUNNING = { retryDelaysDays: [1, 3, 5, 7], finalState: 'unpaid' };
const billingSettings = (dunning: Json) => api('PUT', '/billing-settings', { timeZone: 'America/New_York', dunning });

/** Swaps the card behind a saved method, as if the payer's bank started declining it. */
async function cardStartsDeclining(paymentMethodId: string, card = 'pm_card_chargeDeclinedInsufficientFunds') {
  await system.ctx.db.models.SavedPaymentMethod.updateOne(
    { _id: paymentMethodId },
    { $set: { stripePaymentMethodId: await system.ctx.db.encryption.encrypt(companyId, card) } },
  );
}

/** Stripe's signed `payment_intent.succeeded` for one of our payments, delivered to the receiver (answered 200). */
async function succeededAtStripe(payment: { _id: string; stripePaymentIntentId?: string; amount: number }) {
  const event = stripeEventEnvelope(`evt_${ulid()}`, 'payment_intent.succeeded', {
    id: payment.stripePaymentIntentId,
    object: 'payment_intent',
    status: 'succeeded',
    amount: payment.amount,
    currency: 'usd',
    metadata: { payment_id: payment._id, company_id: companyId },
  });
  expect((await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET })).status).toBe(200);
}

describe('trials and renewals on a test clock', () => {
  it('charges nothing during the trial, then the plan amount at trial end', async () => {
    const clockId = await clock('2026-03-01T15:00:00Z');
    const planId = await plan({ trialDays: 14 });
    const sub = await subscribe({
      planId,
      customerRef: 'payer-trial-01',
      paymentMethodId: await savedMethod('payer-trial-01'),
      testClockId: clockId,
    });
    // 14 local days: 10:00 in New York both times, across the start of daylight saving time.
    expect(sub).toMatchObject({ status: 'trialing', trialEnd: '2026-03-15T14:00:00.000Z' });

    await advance(clockId, '2026-03-10T00:00:00Z');
    expect((await subscription(sub.id)).status).toBe('trialing');
    expect(await payments(sub.id)).toHaveLength(0);

    await advance(clockId, '2026-03-15T16:00:00Z');
    const active = await subscription(sub.id);
    expect(active).toMatchObject({
      status: 'active',
      currentPeriod: { start: '2026-03-15T14:00:00.000Z', end: '2026-04-15T14:00:00.000Z' },
      nextBillingAt: '2026-04-15T14:00:00.000Z',
      latestPeriod: { amount: 3_000, status: 'paid', attempts: 1 },
    });
    const [payment] = await payments(sub.id);
    expect(payment).toMatchObject({ amount: 3_000, status: 'succeeded' });
    const actions = (await system.ctx.db.models.AuditEvent.find({ 'resource.id': sub.id }).lean()).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['subscription.created', 'subscription.period_paid']));
  }, 60_000);

  it('bills anniversaries anchored on Jan 31 at each month end, in the company time zone, over a year', async () => {
    // 10:00 in New York on Jan 31.
    const { sub, clockId } = await subscribedOnClock('2026-01-31T15:00:00Z', 'payer-monthend-01');
    await advance(clockId, '2027-01-31T16:00:00Z');
    const starts = (await periods(sub.id)).map((p) => p.start.toISOString());
    // Month ends clamp (Feb 28, Apr 30 …) and come back to the 31st; 10:00 local across daylight saving time.
    expect(starts).toEqual([
      '2026-01-31T15:00:00.000Z',
      '2026-02-28T15:00:00.000Z',
      '2026-03-31T14:00:00.000Z',
      '2026-04-30T14:00:00.000Z',
      '2026-05-31T14:00:00.000Z',
      '2026-06-30T14:00:00.000Z',
      '2026-07-31T14:00:00.000Z',
      '2026-08-31T14:00:00.000Z',
      '2026-09-30T14:00:00.000Z',
      '2026-10-31T14:00:00.000Z',
      '2026-11-30T15:00:00.000Z',
      '2026-12-31T15:00:00.000Z',
      '2027-01-31T15:00:00.000Z',
    ]);
    const paid = await payments(sub.id);
    expect(paid).toHaveLength(13);
    expect(paid.every((p) => p.status === 'succeeded' && p.amount === 3_000)).toBe(true);
  }, 120_000);
});

describe('dunning', () => {
  it('retries a soft decline 1, 3, 5 and 7 days after the first failure, then ends unpaid', async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-05-01T12:00:00Z', 'payer-dunning-01');
    // The card starts declining (insufficient funds): swap the stored method's card for a declining one.
    await cardStartsDeclining(paymentMethodId);
    // The clock runs what fell due at its own time: the renewal at 12:00 was declined, so retries count from then.
    await advance(clockId, '2026-06-01T13:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', nextBillingAt: '2026-06-02T12:00:00.000Z' });
    await advance(clockId, '2026-06-02T14:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', nextBillingAt: '2026-06-04T12:00:00.000Z' });
    await advance(clockId, '2026-06-09T00:00:00Z');
    const ended = await subscription(sub.id);
    expect(ended).toMatchObject({ status: 'unpaid', nextBillingAt: null });
    // The first payment, then the failed one and its four retries.
    const attempts = await payments(sub.id);
    expect(attempts.map((p) => p.status)).toEqual(['succeeded', 'failed', 'failed', 'failed', 'failed', 'failed']);
    expect((await periods(sub.id)).at(-1)).toMatchObject({ status: 'uncollectible', attempts: 5 });

    // The payer brings a new card: the open period is collected at once, and the subscription is active again.
    const recovered = await api('PATCH', `/subscriptions/${sub.id}`, {
      paymentMethodId: await savedMethod('payer-dunning-01'),
    });
    expect(recovered.status).toBe(200);
    await settledStatus(sub.id, (status) => status === 'active');
    expect((await periods(sub.id)).at(-1)).toMatchObject({ status: 'paid', attempts: 6 });
    expect((await payments(sub.id)).at(-1)).toMatchObject({ status: 'succeeded', amount: 3_000 });
  }, 60_000);

  it("a new card's failed attempt uses none of the retries: the rest of the policy's window is left", async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-05-01T12:00:00Z', 'payer-dunning-02');
    await cardStartsDeclining(paymentMethodId);
    // Declined on Jun 1 12:00, retried Jun 2, 4 and 6: four failed attempts, the last retry due Jun 8 12:00.
    await advance(clockId, '2026-06-07T00:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', nextBillingAt: '2026-06-08T12:00:00.000Z' });
    // On Jun 7 the payer brings a card that is declined outright (expired): it is tried at once and fails, but the
    // payer still has until the window's end (Jun 8 12:00) to bring another.
    const expired = await api('PATCH', `/subscriptions/${sub.id}`, {
      paymentMethodId: await savedMethod('payer-dunning-02', 'pm_card_chargeDeclinedExpiredCard'),
    });
    expect(expired.status).toBe(200);
    const waiting = await waitFor(
      () => subscription(sub.id),
      (s) => s.waitingFor === 'payment_method' || s.status !== 'past_due',
      { what: "the new card's decline" },
    );
    expect(waiting).toMatchObject({ status: 'past_due', waitingFor: 'payment_method' });
    await advance(clockId, '2026-06-08T00:00:00Z');
    const good = await api('PATCH', `/subscriptions/${sub.id}`, {
      paymentMethodId: await savedMethod('payer-dunning-02'),
    });
    expect(good.status).toBe(200);
    await settledStatus(sub.id, (status) => status === 'active');
    expect((await payments(sub.id)).map((p) => p.status)).toEqual([
      'succeeded',
      'failed',
      'failed',
      'failed',
      'failed',
      'failed',
      'succeeded',
    ]);
  }, 60_000);

  it('stops retrying a hard decline until the payer saves a new card, which resumes collection at once', async () => {
    const clockId = await clock('2026-05-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan(),
      customerRef: 'payer-hard-01',
      paymentMethodId: await savedMethod('payer-hard-01', 'pm_card_chargeDeclinedExpiredCard'),
      testClockId: clockId,
    });
    // An expired card on the first payment: incomplete, waiting for a payment method.
    const incomplete = await waitFor(
      () => subscription(sub.id),
      (s) => s.waitingFor === 'payment_method',
      { what: 'the hard decline' },
    );
    expect(incomplete.status).toBe('incomplete');
    await advance(clockId, '2026-05-01T20:00:00Z');
    expect(await payments(sub.id)).toHaveLength(1);

    // The payer saves a new card (Stripe.js confirms a SetupIntent; Stripe sends setup_intent.succeeded).
    const setup = await api('POST', '/payment-methods/setup-intents', { customerRef: 'payer-hard-01' });
    expect(setup.status).toBe(201);
    const delivered = await confirmSetupIntentLocally(system.ctx.db, {
      companyId,
      setupIntentId: setup.body.setupIntentId,
      paymentMethod: 'pm_card_visa',
      apiUrl: system.url,
    });
    expect(delivered.status).toBe(200);
    const active = await settledStatus(sub.id, (status) => status === 'active');
    expect(active.waitingFor).toBeUndefined();
    expect(active.paymentMethodId).not.toBe(sub.paymentMethodId);
    expect((await payments(sub.id)).map((p) => p.status)).toEqual(['failed', 'succeeded']);
  }, 60_000);

  it('expires an incomplete subscription after 23 hours', async () => {
    const clockId = await clock('2026-05-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan(),
      customerRef: 'payer-expire-01',
      paymentMethodId: await savedMethod('payer-expire-01', 'pm_card_chargeDeclined'),
      testClockId: clockId,
    });
    await waitFor(
      () => subscription(sub.id),
      (s) => s.waitingFor === 'payment_method',
      { what: 'the decline' },
    );
    await advance(clockId, '2026-05-02T10:30:00Z');
    expect((await subscription(sub.id)).status).toBe('incomplete');
    await advance(clockId, '2026-05-02T11:30:00Z');
    expect((await subscription(sub.id)).status).toBe('incomplete_expired');

    // The payer saves a card afterwards: an expired subscription takes nothing and is never queued again.
    const saved = await savedMethod('payer-expire-01');
    const manage = manageDepsFor({
      models: system.ctx.db.models,
      queues: system.ctx.queues,
      enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event),
    });
    const resumed = await resumeCollectionForPayer(manage, {
      _id: saved,
      companyId,
      customerRef: 'payer-expire-01',
    });
    expect(resumed).toBe(0);
    const after = await system.ctx.db.models.Subscription.findById(sub.id).lean();
    expect(after).toMatchObject({ status: 'incomplete_expired' });
    expect(after?.nextBillingAt).toBeUndefined();
  }, 60_000);
});

describe('more dunning and billing rules', () => {
  it('reads the dunning policy again when a retry is due: a change made since the failure applies', async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-05-01T12:00:00Z', 'payer-policy-01');
    await cardStartsDeclining(paymentMethodId);
    await advance(clockId, '2026-06-01T13:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', nextBillingAt: '2026-06-02T12:00:00.000Z' });
    try {
      // One retry, ten days after the first failure, then canceled.
      expect((await billingSettings({ retryDelaysDays: [10], finalState: 'canceled' })).status).toBe(200);
      await advance(clockId, '2026-06-03T00:00:00Z');
      expect(await subscription(sub.id)).toMatchObject({
        status: 'past_due',
        nextBillingAt: '2026-06-11T12:00:00.000Z',
      });
      expect(await payments(sub.id)).toHaveLength(2);
      await advance(clockId, '2026-06-12T00:00:00Z');
      expect(await subscription(sub.id)).toMatchObject({ status: 'canceled', nextBillingAt: null });
      expect((await payments(sub.id)).map((p) => p.status)).toEqual(['succeeded', 'failed', 'failed']);
    } finally {
      await billingSettings(DEFAULT_DUNNING);
    }
  }, 60_000);

  it('a late payment_intent.succeeded cannot revive a canceled subscription: the money goes back', async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-05-01T12:00:00Z', 'payer-revive-01');
    await cardStartsDeclining(paymentMethodId);
    await advance(clockId, '2026-06-01T13:00:00Z');
    const failed = (await payments(sub.id)).at(-1)!;
    expect(failed.status).toBe('failed');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' })).body.status).toBe('canceled');

    // Stripe says that PaymentIntent succeeded after all (a delayed event): the payment moves, the subscription does not.
    await succeededAtStripe(failed);
    await waitFor(
      () => system.ctx.db.models.Payment.findById(failed._id).lean(),
      (p) => p?.status === 'succeeded',
      { what: 'the late event to apply to the payment' },
    );
    // Its outcome settles the canceled subscription: the period is invoiced as paid and the payment refunded in full.
    const { Invoice, Refund } = system.ctx.db.models;
    const refund = await waitFor(
      () => Refund.findOne({ paymentId: failed._id }).lean(),
      (found) => found?.status === 'succeeded',
      { what: 'the late charge refunded' },
    );
    expect(refund).toMatchObject({ amount: failed.amount });
    await waitFor(
      () => Invoice.find({ paymentId: failed._id }).lean(),
      (docs) =>
        docs.some((d) => d.kind === 'invoice' && d.status === 'paid') && docs.some((d) => d.kind === 'credit_note'),
      { what: 'its invoice and credit note' },
    );
    expect(await subscription(sub.id)).toMatchObject({ status: 'canceled', nextBillingAt: null });
    expect(await renewSubscription(renewDeps(), sub.id)).toBe('not_due');
    expect(await periods(sub.id)).toHaveLength(2);
  }, 60_000);

  it('a renewal that needed 3-D Secure is paid once the payer finishes it (issue 19 item 8)', async () => {
    const { sub, clockId } = await subscribedOnClock('2026-05-01T12:00:00Z', 'payer-3ds-renewal-01');
    // The bank asks the payer to authenticate the renewal: its PaymentIntent waits in requires_action.
    system.sim.script({ method: 'POST', path: /^\/v1\/payment_intents\/[^/]+\/confirm$/, requiresAction: true });
    await advance(clockId, '2026-06-01T13:00:00Z');
    const renewal = await waitFor(
      async () => (await payments(sub.id)).at(-1)!,
      (p) => p.status === 'requires_action',
      { what: 'the renewal to wait for the payer' },
    );
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', waitingFor: 'payer_action' });

    // The payer finishes 3-D Secure; Stripe says so.
    system.sim.finishAction(renewal.stripePaymentIntentId!, 'succeeded');
    await succeededAtStripe(renewal);
    const paid = await settledStatus(sub.id, (status) => status === 'active');
    expect(paid).toMatchObject({
      currentPeriod: { start: '2026-06-01T12:00:00.000Z' },
      nextBillingAt: '2026-07-01T12:00:00.000Z',
      latestPeriod: { status: 'paid', attempts: 1 },
    });
    expect(paid.waitingFor).toBeUndefined();
    expect(await succeededAmounts(sub.id)).toEqual([3_000, 3_000]);
    await waitFor(
      () => system.ctx.db.models.Invoice.find({ paymentId: renewal._id, kind: 'invoice' }).lean(),
      (docs) => docs.length === 1 && docs[0]!.status === 'paid',
      { what: 'the renewal invoiced as paid' },
    );
  }, 60_000);

  it('bills on a day of the month: a prorated stub up to it, then whole months from it', async () => {
    // Jan 10 at noon in New York; billed on the 1st: the stub is 21.5 days of February's 28.
    const clockId = await clock('2026-01-10T17:00:00Z');
    const sub = await subscribe({
      planId: await plan(),
      customerRef: 'payer-dom-01',
      paymentMethodId: await savedMethod('payer-dom-01'),
      billingDayOfMonth: 1,
      testClockId: clockId,
    });
    await settledStatus(sub.id, (status) => status === 'active');
    await advance(clockId, '2026-02-01T05:01:00Z');
    expect((await periods(sub.id)).map((p) => [p.start.toISOString(), p.amount])).toEqual([
      ['2026-01-10T17:00:00.000Z', Math.round((3_000 * 21.5) / 31)],
      ['2026-02-01T05:00:00.000Z', 3_000],
    ]);
    expect((await subscription(sub.id)).currentPeriod.end).toBe('2026-03-01T05:00:00.000Z');
  }, 60_000);
});

describe('stubs, trials, the minimum charge and merchant-side failures (issue 19 items 5, 6, 10)', () => {
  it('a 31-day stub costs at most the plan, and a change inside it prorates against that full cycle', async () => {
    // Jan 31 00:00 in New York, billed on the 1st: the stub is one day, priced against January's 31 (the cycle that
    // ends Feb 1), not February's 28 ($1.11).
    const clockId = await clock('2027-01-31T05:00:00Z');
    const sub = await subscribe({
      planId: await plan({ amount: 3_100 }),
      customerRef: 'payer-stub-01',
      paymentMethodId: await savedMethod('payer-stub-01'),
      billingDayOfMonth: 1,
      testClockId: clockId,
    });
    await settledStatus(sub.id, (status) => status === 'active');
    expect(await succeededAmounts(sub.id)).toEqual([100]);
    // Half way through the stub (12 hours left of January's 31 days), $31 → $62: + round(6200·½/31) − round(3100·½/31).
    await advance(clockId, '2027-01-31T17:00:00Z');
    const changed = await api('PATCH', `/subscriptions/${sub.id}`, {
      planId: await plan({ amount: 6_200, name: 'Platinum membership' }),
      prorationBehavior: 'create_prorations',
    });
    expect(changed.body).toMatchObject({ pendingProration: 100 - 50 });
  }, 60_000);

  it('a plan change during a trial prorates nothing: no charge inside the trial, the new price from its end', async () => {
    const clockId = await clock('2027-03-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan({ amount: 3_000, trialDays: 10 }),
      customerRef: 'payer-trial-change-01',
      paymentMethodId: await savedMethod('payer-trial-change-01'),
      testClockId: clockId,
    });
    await advance(clockId, '2027-03-04T12:00:00Z');
    const changed = await api('PATCH', `/subscriptions/${sub.id}`, {
      planId: await plan({ amount: 9_000, name: 'Platinum membership' }),
      prorationBehavior: 'always_invoice',
    });
    expect(changed).toMatchObject({ status: 200, body: { status: 'trialing', amount: 9_000 } });
    expect(changed.body.pendingProration).toBeUndefined();
    expect(await payments(sub.id)).toHaveLength(0);
    await advance(clockId, '2027-03-11T13:00:00Z');
    await chargesReach(sub.id, 1, 'the first charge at trial end');
    expect(await succeededAmounts(sub.id)).toEqual([9_000]);
    expect((await subscription(sub.id)).status).toBe('active');
  }, 90_000);

  it('a bill below the 50-cent minimum is not sent: nothing is charged and it is carried onto the next bill', async () => {
    const { sub, clockId } = await subscribedOnClock('2027-04-01T12:00:00Z', 'payer-tiny-01', { amount: 30 });
    expect(await payments(sub.id)).toHaveLength(0);
    expect((await periods(sub.id)).map((p) => [p.amount, p.status])).toEqual([[0, 'paid']]);
    expect((await subscription(sub.id)).pendingProration).toBe(30);
    // May: 30 + 30 = 60, at or above the minimum: charged once, and nothing is pending any more.
    await advance(clockId, '2027-05-01T13:00:00Z');
    await chargesReach(sub.id, 1, 'the carried bill');
    expect(await succeededAmounts(sub.id)).toEqual([60]);
    expect((await subscription(sub.id)).pendingProration ?? 0).toBe(0);
  }, 90_000);

  it('resumed before the paid period ends, that period goes on: nothing more is billed until its end', async () => {
    const { sub, clockId } = await subscribedOnClock('2027-08-01T12:00:00Z', 'payer-pause-short-01');
    await advance(clockId, '2027-08-15T12:00:00Z');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { pause: true })).status).toBe(200);
    await advance(clockId, '2027-08-20T12:00:00Z');
    const resumed = await api('PATCH', `/subscriptions/${sub.id}`, { resume: true });
    expect(resumed.body).toMatchObject({
      status: 'active',
      currentPeriod: { start: '2027-08-01T12:00:00.000Z', end: '2027-09-01T12:00:00.000Z' },
      nextBillingAt: '2027-09-01T12:00:00.000Z',
    });
    await advance(clockId, '2027-08-31T12:00:00Z');
    expect(await succeededAmounts(sub.id)).toEqual([3_000]);
    await advance(clockId, '2027-09-01T13:00:00Z');
    await chargesReach(sub.id, 2, 'the September renewal');
  }, 90_000);

  it('a failure on the merchant’s side (no attestation) uses no dunning attempt and ends nothing; fixed, it collects', async () => {
    // A company of its own: its configuration loses its attestation.
    const company = await createCompany(system.ctx.db, { name: 'Lakeside Dental Group' });
    const token = await system.token(company, ['company_admin'], { subject: 'usr-lakeside-admin' });
    await configureStripeWebhooks(system, company, token, {
      secretKey: 'sk_test_51LakesideSubscriptions1',
      webhookSigningSecrets: ['whsec_LakesideSubscriptions01'],
    });
    const as = { token, company };
    expect((await api('PUT', '/billing-settings', { timeZone: 'UTC', dunning: DEFAULT_DUNNING }, as)).status).toBe(200);
    const planId = (
      await api(
        'POST',
        '/plans',
        { category: 'membership', name: 'Gold', amount: 3_000, currency: 'usd', interval: { unit: 'month', count: 1 } },
        as,
      )
    ).body.id as string;
    const clockId = (await api('POST', '/test-clocks', { frozenTime: '2027-06-01T12:00:00Z' }, as)).body.id as string;
    const created = await api(
      'POST',
      '/subscriptions',
      {
        planId,
        customerRef: 'payer-lakeside-01',
        paymentMethodId: await savedMethod('payer-lakeside-01', 'pm_card_visa', company),
        testClockId: clockId,
      },
      as,
    );
    const id = created.body.id as string;
    const read = async () => (await api('GET', `/subscriptions/${id}`, undefined, as)).body;
    const advanceTo = async (to: string) => {
      expect((await api('POST', `/test-clocks/${clockId}/advance`, { frozenTime: to }, as)).status).toBe(202);
      await waitFor(
        () => api('GET', `/test-clocks/${clockId}`, undefined, as),
        (r) => r.body.status === 'ready',
        { what: `test clock to reach ${to}` },
      );
    };
    await waitFor(read, (s) => s.status === 'active', { what: 'the first period paid' });

    await system.ctx.db.models.Company.updateOne({ _id: company }, { $unset: { 'payment_info.compliance': 1 } });
    await advanceTo('2027-07-01T13:00:00Z');
    const failing = await waitFor(read, (s) => s.latestPeriod?.lastFailure, {
      what: 'the renewal to fail on the configuration',
    });
    expect(failing).toMatchObject({
      status: 'active',
      latestPeriod: { status: 'open', lastFailure: { code: 'gateway_not_attested' } },
    });
    // Past the whole dunning window (7 days): still not the payer's fault, so not past_due, not unpaid.
    await advanceTo('2027-07-12T13:00:00Z');
    expect(await read()).toMatchObject({ status: 'active', latestPeriod: { status: 'open' } });

    await api(
      'POST',
      '/payment-config/attestation',
      {
        status: 'exempt_1179',
        rationale:
          'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).',
      },
      as,
    );
    // Tried again after 1, 2, 4 … hours, at most a day apart: collected within a day of the fix.
    await advanceTo('2027-07-13T14:00:00Z');
    const paid = await waitFor(read, (s) => s.latestPeriod?.status === 'paid', {
      what: 'the period collected once fixed',
    });
    expect(paid).toMatchObject({ status: 'active', currentPeriod: { start: '2027-07-01T12:00:00.000Z' } });
    expect(await succeededAmounts(id)).toEqual([3_000, 3_000]);
  }, 120_000);
});

describe('changes', () => {
  it('cancel at period end stops renewals; a canceled subscription refuses further changes', async () => {
    const { sub, clockId } = await subscribedOnClock('2026-07-01T12:00:00Z', 'payer-cancel-01');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'period_end' })).body.cancelAtPeriodEnd).toBe(
      true,
    );
    await advance(clockId, '2026-09-15T00:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'canceled', canceledAt: '2026-08-01T12:00:00.000Z' });
    expect(await payments(sub.id)).toHaveLength(1);
    const again = await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' });
    expect(again).toMatchObject({ status: 409, body: { error: { code: 'subscription_canceled' } } });
  }, 60_000);

  it('a plan change mid-period carries the exact proration on the next bill', async () => {
    const { sub, clockId } = await subscribedOnClock('2026-04-01T00:00:00Z', 'payer-prorate-01', { amount: 3_000 });
    // April has 30 days; halfway through, from $30 to $60: credit $15 unused, charge $30 for the rest: +$15.
    await advance(clockId, '2026-04-16T00:00:00Z');
    const gold = await plan({ amount: 6_000, name: 'Platinum membership' });
    const changed = await api('PATCH', `/subscriptions/${sub.id}`, {
      planId: gold,
      prorationBehavior: 'create_prorations',
    });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({ amount: 6_000, pendingProration: 1_500 });
    await advance(clockId, '2026-05-01T01:00:00Z');
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([3_000, 7_500]);
    expect((await subscription(sub.id)).pendingProration).toBeUndefined();
  }, 60_000);

  it('always_invoice charges the difference at once; if that charge fails, the next bill carries it', async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-04-01T04:00:00Z', 'payer-invoice-now-01', {
      amount: 3_000,
    });
    // Half way through April (30 days), $30 → $60: +$15.00 now.
    await advance(clockId, '2026-04-16T04:00:00Z');
    const gold = await plan({ amount: 6_000, name: 'Gold now' });
    const changed = await api('PATCH', `/subscriptions/${sub.id}`, {
      planId: gold,
      prorationBehavior: 'always_invoice',
    });
    expect(changed.status).toBe(200);
    expect(changed.body.pendingProration).toBeUndefined();
    await waitFor(
      () => payments(sub.id),
      (made) => made.length === 2 && made[1]!.status === 'succeeded',
      { what: 'the plan change to be charged' },
    );
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([3_000, 1_500]);
    // The charge's renewal has settled (it writes the subscription too): FerretDB, the test server, can lose one of
    // two concurrent writes of one document, which MongoDB never does.
    await waitFor(
      () => system.ctx.db.models.Subscription.findById(sub.id).lean(),
      (s) => !s?.adjustmentDue && s?.nextBillingAt?.toISOString() === s?.currentPeriod.end.toISOString(),
      { what: 'the plan change settled' },
    );

    // Back to $30 and up to $60 again, now with a card that declines: the $15.00 waits for May's bill.
    const basic = await plan({ amount: 3_000, name: 'Basic again' });
    expect(await api('PATCH', `/subscriptions/${sub.id}`, { planId: basic, prorationBehavior: 'none' })).toMatchObject({
      status: 200,
      body: { planId: basic },
    });
    await cardStartsDeclining(paymentMethodId);
    expect(
      (await api('PATCH', `/subscriptions/${sub.id}`, { planId: gold, prorationBehavior: 'always_invoice' })).status,
    ).toBe(200);
    const carried = await waitFor(
      () => subscription(sub.id),
      (s) => s.pendingProration === 1_500,
      { what: 'the failed charge to be carried' },
    );
    expect(carried.status).toBe('active');
    await system.ctx.db.models.SavedPaymentMethod.updateOne(
      { _id: paymentMethodId },
      { $set: { stripePaymentMethodId: await system.ctx.db.encryption.encrypt(companyId, 'pm_card_visa') } },
    );
    await advance(clockId, '2026-05-01T05:00:00Z');
    expect((await payments(sub.id)).map((p) => [p.amount, p.status])).toEqual([
      [3_000, 'succeeded'],
      [1_500, 'succeeded'],
      [1_500, 'failed'],
      [7_500, 'succeeded'],
    ]);
  }, 60_000);

  it('a change that meets a renewal writing meanwhile is decided again, not answered 409', async () => {
    const { sub } = await subscribedOnClock('2026-04-01T04:00:00Z', 'payer-race-01');
    const { models } = system.ctx.db;
    // A renewal writes the subscription between the change's read and its write (twice: it is decided again twice).
    let interleaved = 0;
    const Subscription = new Proxy(models.Subscription, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== 'findOne') return typeof value === 'function' ? value.bind(target) : value;
        return (...args: Parameters<typeof target.findOne>) => ({
          lean: async () => {
            const read = await target.findOne(...args).lean();
            if (interleaved < 2) {
              interleaved += 1;
              await target.updateOne({ _id: sub.id }, { $set: { updatedAt: new Date(Date.now() + interleaved) } });
            }
            return read;
          },
        });
      },
    });
    const deps = {
      ...manageDepsFor({
        models: { ...models, Subscription } as typeof models,
        queues: system.ctx.queues,
        enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event),
      }),
    };
    const paused = await changeSubscription(deps, {
      companyId,
      subscriptionId: sub.id,
      change: { pause: true },
      actor: { type: 'user', id: 'usr-sub-admin' },
    });
    expect(interleaved).toBe(2);
    expect(paused).toMatchObject({ outcome: 'changed', subscription: { status: 'paused' } });
    expect((await subscription(sub.id)).status).toBe('paused');
  }, 60_000);

  it('always_invoice: a change that stopped after its write is still charged, once, by the next renewal run', async () => {
    const { sub, clockId } = await subscribedOnClock('2026-04-01T04:00:00Z', 'payer-invoice-crash-01', {
      amount: 3_000,
    });
    await advance(clockId, '2026-04-16T04:00:00Z');
    // The api process dies right after writing the plan change, before charging the difference.
    const crashing = {
      ...manageDepsFor({
        models: system.ctx.db.models,
        queues: system.ctx.queues,
        enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event),
      }),
      chargeAdjustment: () => Promise.reject(new Error('process killed')),
    };
    await expect(
      changeSubscription(crashing, {
        companyId,
        subscriptionId: sub.id,
        change: {
          planId: await plan({ amount: 6_000, name: 'Platinum membership' }),
          prorationBehavior: 'always_invoice',
        },
        actor: { type: 'user', id: 'usr-sub-admin' },
      }),
    ).rejects.toThrow('process killed');
    expect(await succeededAmounts(sub.id)).toEqual([3_000]);
    expect((await system.ctx.db.models.Subscription.findById(sub.id).lean())?.adjustmentDue).toMatchObject({
      amount: 1_500,
    });
    // A retried PATCH says the plan is set; the difference is not lost: the next renewal run charges it.
    expect(
      (
        await api('PATCH', `/subscriptions/${sub.id}`, {
          planId: (await subscription(sub.id)).planId,
          prorationBehavior: 'always_invoice',
        })
      ).body,
    ).toMatchObject({ error: { code: 'same_plan' } });
    await renewSubscription(renewDeps(), sub.id);
    await chargesReach(sub.id, 2, 'the plan change’s difference');
    expect(await succeededAmounts(sub.id)).toEqual([3_000, 1_500]);
    await renewSubscription(renewDeps(), sub.id);
    expect(await payments(sub.id)).toHaveLength(2);
    expect((await system.ctx.db.models.Subscription.findById(sub.id).lean())?.adjustmentDue).toBeUndefined();
  }, 60_000);

  describe('adjustments listed open on the subscription', () => {
    const stored = (id: string) => system.ctx.db.models.Subscription.findById(id).lean();
    const adjustmentOf = async (id: string) =>
      (await periods(id)).find((record) => record.kind === 'adjustment' && record.status !== 'uncollectible');

    /**
     * A subscription billed $30 from Apr 1 whose mid-April upgrade to $60 was charged at once ($15) and settled; then
     * put back to where a workers process killed after that charge's outcome, before its renewal run recorded the
     * adjustment paid, leaves it: the adjustment open, still listed (or, `unlisted`, a subscription stored before the
     * list, which has none).
     */
    async function upgradeKilledBeforeRecorded(payer: string, unlisted = false) {
      const { sub, clockId } = await subscribedOnClock('2026-04-01T04:00:00Z', payer, { amount: 3_000 });
      expect((await stored(sub.id))?.openAdjustments).toEqual([]);
      await advance(clockId, '2026-04-16T04:00:00Z');
      const gold = await plan({ amount: 6_000, name: 'Gold listed' });
      expect(
        (await api('PATCH', `/subscriptions/${sub.id}`, { planId: gold, prorationBehavior: 'always_invoice' })).status,
      ).toBe(200);
      const adjustment = await waitFor(
        () => adjustmentOf(sub.id),
        (record) => record?.status === 'paid',
        { what: 'the upgrade’s adjustment paid' },
      );
      // Taken off the list by the run that recorded it paid.
      await waitFor(
        () => stored(sub.id),
        (s) => s?.openAdjustments?.length === 0 && !s.adjustmentDue,
        { what: 'the adjustment off the list' },
      );
      await system.ctx.db.models.SubscriptionPeriod.updateOne(
        { _id: adjustment!._id },
        { $set: { status: 'open' }, $unset: { paidAt: 1 } },
      );
      await system.ctx.db.models.Subscription.updateOne(
        { _id: sub.id },
        unlisted ? { $unset: { openAdjustments: 1 } } : { $set: { openAdjustments: [adjustment!._id] } },
      );
      return { sub, clockId, adjustment: adjustment! };
    }

    it('one left open by a killed run is recorded paid by the next renewal, invoiced once, and taken off the list', async () => {
      const { sub, clockId, adjustment } = await upgradeKilledBeforeRecorded('payer-adjust-listed-01');
      await advance(clockId, '2026-05-01T05:00:00Z');
      expect(await adjustmentOf(sub.id)).toMatchObject({ _id: adjustment._id, status: 'paid' });
      expect((await stored(sub.id))?.openAdjustments).toEqual([]);
      expect(await succeededAmounts(sub.id)).toEqual([3_000, 1_500, 6_000]);
      expect(await system.ctx.db.models.Invoice.countDocuments({ 'source.id': adjustment._id })).toBe(1);
    }, 90_000);

    it('a subscription stored before the list: its next renewal reads its open records and writes the list', async () => {
      const { sub, clockId, adjustment } = await upgradeKilledBeforeRecorded('payer-adjust-unlisted-01', true);
      expect((await stored(sub.id))?.openAdjustments).toBeUndefined();
      await advance(clockId, '2026-05-01T05:00:00Z');
      expect(await adjustmentOf(sub.id)).toMatchObject({ _id: adjustment._id, status: 'paid' });
      expect((await stored(sub.id))?.openAdjustments).toEqual([]);
      expect(await succeededAmounts(sub.id)).toEqual([3_000, 1_500, 6_000]);
    }, 90_000);

    it('with none listed, a renewal at its period’s end reads no period once the move after its payment recorded it paid', async () => {
      const { sub, clockId } = await subscribedOnClock('2026-06-01T04:00:00Z', 'payer-adjust-none-01');
      const { models } = system.ctx.db;
      const reads: string[] = [];
      const SubscriptionPeriod = new Proxy(models.SubscriptionPeriod, {
        get(target, property, receiver) {
          const value = Reflect.get(target, property, receiver);
          if (property === 'find' || property === 'findById') reads.push(String(property));
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      const deps = { ...renewDeps(), models: { ...models, SubscriptionPeriod } as typeof models };
      expect((await stored(sub.id))?.paidThrough?.toISOString()).toBe('2026-07-01T04:00:00.000Z');
      // Due at the end of its paid first period: July opened with its insert, nothing read before it.
      expect(await renewSubscription(deps, sub.id, { now: new Date('2026-07-01T04:00:00Z') })).toBe('charging');
      expect(reads).toEqual([]);
      await chargesReach(sub.id, 2, 'July’s charge');
      // Its clock still says June: July is recorded paid when the clock gets there.
      await advance(clockId, '2026-07-01T05:00:00Z');
      expect(await stored(sub.id)).toMatchObject({
        nextBillingAt: new Date('2026-08-01T04:00:00Z'),
        paidThrough: new Date('2026-08-01T04:00:00Z'),
      });
      // A subscription stored before `paidThrough`: its period read by its id (not the open records), then August.
      await models.Subscription.updateOne({ _id: sub.id }, { $unset: { paidThrough: 1 } });
      expect(await renewSubscription(deps, sub.id, { now: new Date('2026-08-01T04:00:00Z') })).toBe('charging');
      expect(reads).toEqual(['findById']);
      await chargesReach(sub.id, 3, 'August’s charge');
      await advance(clockId, '2026-08-01T05:00:00Z');
      expect(await succeededAmounts(sub.id)).toEqual([3_000, 3_000, 3_000]);
      expect((await periods(sub.id)).map((record) => [record.start.toISOString(), record.status])).toEqual([
        ['2026-06-01T04:00:00.000Z', 'paid'],
        ['2026-07-01T04:00:00.000Z', 'paid'],
        ['2026-08-01T04:00:00.000Z', 'paid'],
      ]);
    }, 90_000);
  });

  it('a downgrade’s credit lowers the next bills to zero, never below, until it is used up', async () => {
    // Midnight in New York on Apr 1: a 30-day period.
    const { sub, clockId } = await subscribedOnClock('2026-04-01T04:00:00Z', 'payer-credit-01', {
      amount: 6_000,
      name: 'Platinum plus',
    });
    // An hour in, down to $10: credit 719/720 of $60 (5992), charge 719/720 of $10 (999): -4993.
    await advance(clockId, '2026-04-01T05:00:00Z');
    const basic = await plan({ amount: 1_000, name: 'Basic plus' });
    const changed = await api('PATCH', `/subscriptions/${sub.id}`, { planId: basic });
    expect(changed.body).toMatchObject({ amount: 1_000, pendingProration: -4_993 });
    await advance(clockId, '2026-06-01T05:00:00Z');
    expect((await periods(sub.id)).map((p) => [p.amount, p.status])).toEqual([
      [6_000, 'paid'],
      [0, 'paid'],
      [0, 'paid'],
    ]);
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([6_000]);
    expect((await subscription(sub.id)).pendingProration).toBe(-2_993);
  }, 60_000);

  it('never expires while its first payment is in flight: the payment’s outcome decides (issue 19 item 3)', async () => {
    const clockId = await clock('2026-05-10T12:00:00Z');
    // Stripe takes 3 s to answer the first confirm.
    system.sim.script({ method: 'POST', path: /^\/v1\/payment_intents\/[^/]+\/confirm$/, delayMs: 3_000 });
    const sub = await subscribe({
      planId: await plan(),
      customerRef: 'payer-expire-02',
      paymentMethodId: await savedMethod('payer-expire-02'),
      testClockId: clockId,
    });
    await waitFor(
      () => payments(sub.id),
      (found) => found.some((p) => p.status === 'processing'),
      { what: 'the first payment in flight' },
    );
    // The sweep looks at it 24 hours on (in real time, a gateway that answers slowly for hours): it waits.
    expect(await renewSubscription(renewDeps(), sub.id, { now: new Date('2026-05-11T12:00:00Z') })).toBe('charging');
    expect((await subscription(sub.id)).status).toBe('incomplete');
    await settledStatus(sub.id, (status) => status === 'active');
    expect((await subscription(sub.id)).latestPeriod).toMatchObject({ status: 'paid' });
  }, 60_000);

  it('an advance that runs out of its job’s time hands the rest on: the clock ends ready, nothing renewed twice', async () => {
    const { sub, clockId } = await subscribedOnClock('2026-07-01T12:00:00Z', 'payer-long-advance-01');
    const requested = await requestClockAdvance(system.ctx.db.models, {
      companyId,
      testClockId: clockId,
      to: new Date('2026-10-01T13:00:00Z'),
    });
    expect(requested.outcome).toBe('advancing');
    // No time at all: it stops after its first round, and says so.
    expect(await runClockAdvance(renewDeps(), clockId, { budgetMs: 0 })).toMatchObject({ unfinished: true });
    expect((await api('GET', `/test-clocks/${clockId}`)).body.status).toBe('advancing');
    expect(await runClockAdvance(renewDeps(), clockId)).not.toHaveProperty('unfinished');
    expect((await api('GET', `/test-clocks/${clockId}`)).body.status).toBe('ready');
    expect((await payments(sub.id)).filter((p) => p.status === 'succeeded').map((p) => p.amount)).toEqual([
      3_000, 3_000, 3_000, 3_000,
    ]);
  }, 60_000);

  it('refuses bad input with a reason, changing nothing', async () => {
    const other = await createCompany(system.ctx.db, { name: 'Elsewhere Clinic' });
    const otherAdmin = await system.token(other, ['company_admin'], { subject: 'usr-other-admin' });
    const otherPlan = (
      await api(
        'POST',
        '/plans',
        {
          category: 'membership',
          name: 'Basic',
          amount: 1_000,
          currency: 'usd',
          interval: { unit: 'month', count: 1 },
        },
        { token: otherAdmin, company: other },
      )
    ).body.id as string;
    const planId = await plan({ officeIds: ['north'] });
    const method = await savedMethod('payer-bad-01');
    const base = { planId, customerRef: 'payer-bad-01', paymentMethodId: method, officeId: 'north' };
    const cases: Array<[Json, number, string]> = [
      [{ ...base, planId: otherPlan }, 404, 'plan_not_found'],
      [{ ...base, officeId: 'south' }, 422, 'office_not_in_plan'],
      [{ ...base, paymentMethodId: await savedMethod('payer-someone-else') }, 422, 'payment_method_of_another_payer'],
      [
        {
          ...base,
          paymentMethodId: await insertSavedCard(system.ctx.db, {
            companyId,
            customerRef: 'payer-bad-01',
            paymentMethod: 'pm_card_visa',
            savedBy: `test-${ulid()}`,
            officeId: 'south',
          }),
        },
        422,
        'payment_method_of_another_office',
      ],
    ];
    for (const [body, status, code] of cases) {
      const response = await api('POST', '/subscriptions', body);
      expect({ status: response.status, code: response.body.error?.code }).toEqual({ status, code });
    }
    expect(await system.ctx.db.models.Subscription.countDocuments({ customerRef: 'payer-bad-01' })).toBe(0);
    const name = await api('POST', '/plans', {
      category: 'membership',
      name: 'Weekly therapy for depression and anxiety',
      amount: 1_000,
      currency: 'usd',
      interval: { unit: 'week', count: 1 },
    });
    expect(name.status).toBe(400);

    const sub = await subscribe(base);
    const same = await api('PATCH', `/subscriptions/${sub.id}`, { planId });
    expect(same).toMatchObject({ status: 422, body: { error: { code: 'same_plan' } } });
  }, 60_000);
});

describe('a saved card belongs to one gateway account (issue 19 item 12)', () => {
  it('refuses a card saved under the account the configuration used before it moved to another', async () => {
    const lakeside = await createCompany(system.ctx.db, { name: 'Lakeside Pediatrics' });
    const token = await system.token(lakeside, ['company_admin'], { subject: 'usr-lakeside-admin' });
    const as = { token, company: lakeside };
    const attest = () =>
      api(
        'POST',
        '/payment-config/attestation',
        { status: 'exempt_1179', rationale: 'Stripe receives amounts and opaque ids only, never PHI (section 1179).' },
        as,
      );
    const useAccount = async (secretKey: string, accountId: string) => {
      const credentials = { secretKey, accountId, webhookSigningSecrets: [WEBHOOK_SECRET] };
      expect((await api('PUT', '/payment-config', { mode: 'company', credentials }, as)).status).toBeLessThan(300);
      expect((await attest()).status).toBeLessThan(300);
    };
    const cardSaved = async (customerRef: string) => {
      const setup = await api('POST', '/payment-methods/setup-intents', { customerRef }, as);
      expect(setup.status).toBe(201);
      const { setupIntentId } = setup.body;
      const delivered = await confirmSetupIntentLocally(system.ctx.db, {
        companyId: lakeside,
        setupIntentId,
        paymentMethod: 'pm_card_visa',
        apiUrl: system.url,
      });
      expect(delivered.status).toBe(200);
      const saved = await waitFor(
        () => system.ctx.db.models.SavedPaymentMethod.findOne({ companyId: lakeside, setupIntentId }).lean(),
        (found) => found !== null,
        { what: 'the card saved' },
      );
      return saved!._id;
    };
    await useAccount('sk_test_51LakesideAAAAAAAA0001', 'acct_1LakesideAAAAAAAA');
    const planId = (
      await api(
        'POST',
        '/plans',
        {
          category: 'membership',
          name: 'Family plan',
          amount: 2_000,
          currency: 'usd',
          interval: { unit: 'month', count: 1 },
        },
        as,
      )
    ).body.id as string;
    const before = await cardSaved('payer-lakeside-01');

    // The company moves to another Stripe account: the card saved in the first one does not exist in it.
    await useAccount('sk_test_51LakesideBBBBBBBB0001', 'acct_1LakesideBBBBBBBB');
    const refused = await api(
      'POST',
      '/subscriptions',
      { planId, customerRef: 'payer-lakeside-01', paymentMethodId: before },
      as,
    );
    expect(refused).toMatchObject({ status: 422, body: { error: { code: 'payment_method_of_another_account' } } });
    expect(await system.ctx.db.models.Subscription.countDocuments({ companyId: lakeside })).toBe(0);

    // A card saved in the account now serving the company is taken; switching back to the old card is refused.
    const after = await cardSaved('payer-lakeside-01');
    const created = await api(
      'POST',
      '/subscriptions',
      { planId, customerRef: 'payer-lakeside-01', paymentMethodId: after },
      as,
    );
    expect(created.status).toBe(201);
    const back = await api('PATCH', `/subscriptions/${created.body.id}`, { paymentMethodId: before }, as);
    expect(back).toMatchObject({ status: 422, body: { error: { code: 'payment_method_of_another_account' } } });
  }, 60_000);
});

describe('exactly once per period', () => {
  it('two sweeps and five renewals at once make one payment for the period', async () => {
    const sub = await subscribe({
      planId: await plan(),
      customerRef: 'payer-race-01',
      paymentMethodId: await savedMethod('payer-race-01'),
    });
    const deps = renewDeps();
    const sweepQueue = system.ctx.queues.renewals;
    await Promise.all([
      ...Array.from({ length: 5 }, () => renewSubscription(deps, sub.id)),
      sweepRenewals({ models: system.ctx.db.models, renewalsQueue: sweepQueue, logger: system.ctx.logger }),
      sweepRenewals({ models: system.ctx.db.models, renewalsQueue: sweepQueue, logger: system.ctx.logger }),
    ]);
    await settledStatus(sub.id, (status) => status === 'active');
    expect(await payments(sub.id)).toHaveLength(1);
    expect(await periods(sub.id)).toHaveLength(1);
    const intentId = (await payments(sub.id))[0]!.stripePaymentIntentId!;
    expect(system.sim.succeededChargeCount(intentId)).toBe(1);
  });

  /** A subscription whose trial ended, its clock past that, and its first period made current: due now. */
  async function dueAfterTrial(payer: string) {
    const clockId = await clock('2026-08-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan({ trialDays: 1 }),
      customerRef: payer,
      paymentMethodId: await savedMethod(payer),
      testClockId: clockId,
    });
    const { models } = system.ctx.db;
    await models.TestClock.updateOne({ _id: clockId }, { $set: { frozenTime: new Date('2026-08-02T13:00:00Z') } });
    const stored = (await models.Subscription.findById(sub.id).lean())!;
    const period = { index: 0, start: stored.trialEnd!, end: new Date(stored.trialEnd!.getTime() + 31 * DAY) };
    await models.Subscription.updateOne({ _id: sub.id }, { $set: { currentPeriod: period } });
    const key = periodId(sub.id, period.start);
    return { sub, key, period };
  }

  const openPeriodRecord = (subscriptionId: string, key: string, period: { start: Date; end: Date }) =>
    system.ctx.db.models.SubscriptionPeriod.create({
      _id: key,
      companyId,
      subscriptionId,
      index: 0,
      ...period,
      amount: 3_000,
      currency: 'usd',
      status: 'open',
      attempts: 0,
    });

  // As the renewal makes it (recording the attempt, from which its charge sends the attempt's event), or as a version
  // before that made it (without: the run that records the attempt sends the event).
  const attemptPayment = (subscriptionId: string, key: string, payer: string, recordsAttempt = true) =>
    system.ctx.db.models.Payment.create({
      _id: `pay_${ulid()}`,
      companyId,
      idempotencyKey: `sub:${key}:1`,
      requestHash: `sub:${key}:1`,
      amount: 3_000,
      currency: 'usd',
      customer: `cus_${payer.replace(/-/g, '')}`,
      paymentMethod: 'pm_card_visa',
      status: 'queued',
      subscription: {
        subscriptionId,
        periodId: key,
        ...(recordsAttempt ? { attempt: { number: 1, reason: 'first_attempt', at: new Date() } } : {}),
      },
      requestedBy: { type: 'service', id: 'renewals-worker' },
      requestId: `req_${payer}`,
      attempts: 0,
    });

  // What a renewal killed between two of its steps leaves behind; the next run must charge the period exactly once.
  const crashes: Array<
    [
      string,
      (sub: string, key: string, period: { start: Date; end: Date }, payer: string) => Promise<string | undefined>,
    ]
  > = [
    [
      'after opening the period, before any payment',
      async (sub, key, period) => {
        await openPeriodRecord(sub, key, period);
        return undefined;
      },
    ],
    [
      'after making the attempt’s payment, before the period recorded it',
      async (sub, key, period, payer) => {
        await openPeriodRecord(sub, key, period);
        return (await attemptPayment(sub, key, payer))._id;
      },
    ],
    [
      'after making the attempt’s payment (an earlier version’s, which does not record the attempt), before the period recorded it',
      async (sub, key, period, payer) => {
        await openPeriodRecord(sub, key, period);
        return (await attemptPayment(sub, key, payer, false))._id;
      },
    ],
    [
      'after opening the period with its first attempt, before that attempt’s payment was made',
      async (sub, key, period) => {
        const paymentId = `pay_${ulid()}`;
        await openPeriodRecord(sub, key, period);
        await system.ctx.db.models.SubscriptionPeriod.updateOne({ _id: key }, { $set: { attempts: 1, paymentId } });
        return paymentId;
      },
    ],
    [
      'after the period recorded the attempt, before its charge was queued',
      async (sub, key, period, payer) => {
        await openPeriodRecord(sub, key, period);
        const payment = await attemptPayment(sub, key, payer);
        await system.ctx.db.models.SubscriptionPeriod.updateOne(
          { _id: key },
          { $set: { attempts: 1, paymentId: payment._id } },
        );
        return payment._id;
      },
    ],
  ];
  it.each(crashes)('a renewal killed %s: the next run charges the period once', async (_, leave) => {
    const payer = `payer-crash-${ulid().slice(-6).toLowerCase()}`;
    const { sub, key, period } = await dueAfterTrial(payer);
    const left = await leave(sub.id, key, period, payer);
    expect(await renewSubscription(renewDeps(), sub.id)).toBe('charging');
    await settledStatus(sub.id, (status) => status === 'active');
    const made = await payments(sub.id);
    expect(made).toHaveLength(1);
    if (left) expect(made[0]!._id).toBe(left);
    expect(system.sim.succeededChargeCount(made[0]!.stripePaymentIntentId!)).toBe(1);
    expect((await periods(sub.id)).map((p) => [p.status, p.attempts])).toEqual([['paid', 1]]);
    // The attempt is on the trail once, naming its payment: sent by the charge from what the payment records, or by
    // the run that recorded the attempt when the payment (made before payments recorded it) does not.
    const attempts = (await trailOf(system.ctx, companyId, [sub.id], ['subscription.attempt_started'])).filter(
      (event) => event.action === 'subscription.attempt_started',
    );
    expect(attempts.map((event) => [event.reason, event.changes?.[0]?.after])).toEqual([
      ['first_attempt', made[0]!._id],
    ]);
  });

  it('a renewal killed after the payment succeeded, before the period was marked paid: the next run marks it, charging nothing', async () => {
    const payer = 'payer-crash-paid';
    const { sub, key, period } = await dueAfterTrial(payer);
    await openPeriodRecord(sub.id, key, period);
    expect(await renewSubscription(renewDeps(), sub.id)).toBe('charging');
    await settledStatus(sub.id, (status) => status === 'active');
    const [payment] = await payments(sub.id);
    // Back to what it was between the payment's success and the period's write.
    const { models } = system.ctx.db;
    await models.SubscriptionPeriod.updateOne({ _id: key }, { $set: { status: 'open' }, $unset: { paidAt: 1 } });
    await models.Subscription.updateOne({ _id: sub.id }, { $set: { status: 'trialing', nextBillingAt: period.start } });
    expect(await renewSubscription(renewDeps(), sub.id)).toBe('settled');
    expect(await subscription(sub.id)).toMatchObject({ status: 'active', nextBillingAt: period.end.toISOString() });
    expect((await payments(sub.id)).map((p) => p._id)).toEqual([payment!._id]);
    expect(system.sim.succeededChargeCount(payment!.stripePaymentIntentId!)).toBe(1);
  });

  it('dunning killed after giving the period up, before the status move: the next run makes the move', async () => {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2026-08-01T12:00:00Z', 'payer-crash-give-up');
    await cardStartsDeclining(paymentMethodId);
    await advance(clockId, '2026-09-01T13:00:00Z');
    expect((await subscription(sub.id)).status).toBe('past_due');
    // What a give-up that stopped after its first write leaves: the period uncollectible, the subscription past due.
    const open = (await periods(sub.id)).at(-1)!;
    await system.ctx.db.models.SubscriptionPeriod.updateOne({ _id: open._id }, { $set: { status: 'uncollectible' } });
    expect(await renewSubscription(renewDeps(), sub.id, { now: new Date('2026-09-02T13:00:00Z') })).toBe('settled');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid', nextBillingAt: null });
  }, 60_000);
});

describe('fairness', () => {
  it('interleaves companies: one company’s 300 due renewals do not hold back another’s 5', async () => {
    const { models } = system.ctx.db;
    const big = `co_big_${ulid()}`;
    const small = `co_small_${ulid()}`;
    const past = new Date(Date.now() - 60_000);
    const row = (company: string, i: number) => ({
      _id: `sub_${ulid()}`,
      companyId: company,
      planId: `plan_${ulid()}`,
      customerRef: `payer-${i}`,
      paymentMethodId: `spm_${'0'.repeat(32)}`,
      status: 'active',
      amount: 1_000,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
      cycle: { anchor: past, timeZone: 'UTC' },
      currentPeriod: { index: 0, start: past, end: new Date(past.getTime() + 30 * DAY) },
      // The big company's are all due earlier: a plain nextBillingAt order would put them all first.
      nextBillingAt: new Date(past.getTime() - (company === big ? 60_000 : 0)),
      cancelAtPeriodEnd: false,
      idempotencyKey: `fair-${ulid()}`,
      requestHash: 'x',
      requestedBy: { type: 'service', id: 'test' },
      requestId: 'req_fair',
    });
    await models.Subscription.insertMany([
      ...Array.from({ length: 300 }, (_, i) => row(big, i)),
      ...Array.from({ length: 5 }, (_, i) => row(small, i)),
    ]);
    // A queue no worker serves, to look at the order the sweep queued them in.
    const queue = new Queue<RenewalJob>('renewals', { connection: system.ctx.redis, prefix: `fair-${ulid()}` });
    try {
      await sweepRenewals({ models, renewalsQueue: queue, logger: system.ctx.logger, batchSize: 50 });
      const waiting = await queue.getJobs(['waiting', 'prioritized'], 0, 400, true);
      const order = waiting.map((job) => (job.data as { subscriptionId: string }).subscriptionId);
      const smallIds = new Set(
        (await models.Subscription.find({ companyId: small }, { _id: 1 }).lean()).map((s) => s._id),
      );
      const positions = order.flatMap((id, i) => (smallIds.has(id) ? [i] : []));
      expect(positions).toHaveLength(5);
      expect(Math.max(...positions)).toBeLessThan(10);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      await models.Subscription.deleteMany({ companyId: { $in: [big, small] } });
    }
  });

  it('stays fair beyond one sweep: the next sweep’s 5 of another company run before a 300-renewal backlog', async () => {
    const { models } = system.ctx.db;
    const big = `co_big_${ulid()}`;
    const small = `co_small_${ulid()}`;
    const first = new Date(Date.now() - 120_000);
    const row = (company: string, due: Date) => ({
      _id: `sub_${ulid()}`,
      companyId: company,
      planId: `plan_${ulid()}`,
      customerRef: `payer-${ulid()}`,
      paymentMethodId: `spm_${'0'.repeat(32)}`,
      status: 'active',
      amount: 1_000,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
      cycle: { anchor: due, timeZone: 'UTC' },
      currentPeriod: { index: 0, start: due, end: new Date(due.getTime() + 30 * DAY) },
      nextBillingAt: due,
      cancelAtPeriodEnd: false,
      idempotencyKey: `fair-${ulid()}`,
      requestHash: 'x',
      requestedBy: { type: 'service', id: 'test' },
      requestId: 'req_fair',
    });
    await models.Subscription.insertMany(Array.from({ length: 300 }, () => row(big, first)));
    const queue = new Queue<RenewalJob>('renewals', { connection: system.ctx.redis, prefix: `fair-${ulid()}` });
    try {
      // The first sweep queues the big company's 300; before they have run, the small company's 5 fall due.
      await sweepRenewals({ models, renewalsQueue: queue, logger: system.ctx.logger, now: () => first });
      const later = new Date(first.getTime() + 60_000);
      await models.Subscription.insertMany(Array.from({ length: 5 }, () => row(small, later)));
      await sweepRenewals({ models, renewalsQueue: queue, logger: system.ctx.logger, now: () => later });
      // The order the queue will run them in.
      const queued = await queue.getJobs(['waiting', 'prioritized'], 0, 400, true);
      expect(queued).toHaveLength(305);
      const smallIds = new Set(
        (await models.Subscription.find({ companyId: small }, { _id: 1 }).lean()).map((s) => s._id),
      );
      const positions = queued.flatMap((job, i) =>
        smallIds.has((job.data as { subscriptionId: string }).subscriptionId) ? [i] : [],
      );
      expect(positions).toHaveLength(5);
      expect(Math.max(...positions)).toBeLessThan(10);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
      await models.Subscription.deleteMany({ companyId: { $in: [big, small] } });
    }
  });
});

describe('what is owed after pauses and failed collection (issue 19)', () => {
  it('pause on Jan 15, resume on Apr 10: billed for January, then a new cycle from Apr 10 — never the paused months', async () => {
    const { sub, clockId } = await subscribedOnClock('2027-01-01T12:00:00Z', 'payer-pause-01');
    await advance(clockId, '2027-01-15T12:00:00Z');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { pause: true })).status).toBe(200);
    await advance(clockId, '2027-04-10T12:00:00Z');
    expect(await succeededAmounts(sub.id)).toEqual([3_000]);

    expect((await api('PATCH', `/subscriptions/${sub.id}`, { resume: true })).status).toBe(200);
    const resumed = await waitFor(
      () => subscription(sub.id),
      (s) => s.latestPeriod?.status === 'paid' && s.latestPeriod.start === '2027-04-10T12:00:00.000Z',
      { what: 'the resumed period to be paid' },
    );
    expect(resumed).toMatchObject({
      status: 'active',
      currentPeriod: { start: '2027-04-10T12:00:00.000Z', end: '2027-05-10T12:00:00.000Z' },
    });
    expect(await succeededAmounts(sub.id)).toEqual([3_000, 3_000]);
    await advance(clockId, '2027-05-10T13:00:00Z');
    await chargesReach(sub.id, 3, 'the renewal a cycle after the resume');
  }, 90_000);

  it('resumed inside its trial, it is trialing again and bills nothing until the trial ends', async () => {
    const clockId = await clock('2027-02-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan({ trialDays: 14 }),
      customerRef: 'payer-pause-02',
      paymentMethodId: await savedMethod('payer-pause-02'),
      testClockId: clockId,
    });
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { pause: true })).status).toBe(200);
    await advance(clockId, '2027-02-05T12:00:00Z');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { resume: true })).body).toMatchObject({
      status: 'trialing',
    });
    expect(await payments(sub.id)).toHaveLength(0);
    await advance(clockId, '2027-02-15T13:00:00Z');
    await chargesReach(sub.id, 1, 'the charge at trial end');
  }, 90_000);

  it('a hard decline ends dunning when the policy window does (unpaid), and pausing is refused while owed', async () => {
    const clockId = await clock('2027-03-01T12:00:00Z');
    const sub = await subscribe({
      planId: await plan({ trialDays: 7 }),
      customerRef: 'payer-hard-02',
      paymentMethodId: await savedMethod('payer-hard-02', 'pm_card_chargeDeclinedExpiredCard'),
      testClockId: clockId,
    });
    await advance(clockId, '2027-03-08T13:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', waitingFor: 'payment_method' });
    const refused = await api('PATCH', `/subscriptions/${sub.id}`, { pause: true });
    expect(refused).toMatchObject({ status: 409, body: { error: { code: 'subscription_past_due' } } });

    // The policy's window is 7 days after the first failure.
    await advance(clockId, '2027-03-14T12:00:00Z');
    expect((await subscription(sub.id)).status).toBe('past_due');
    await advance(clockId, '2027-03-15T14:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid', latestPeriod: { status: 'uncollectible' } });

    // Three months later the payer brings a card: the owed period is collected, then a new cycle starts now; the
    // months that passed while unpaid are never billed.
    await advance(clockId, '2027-06-20T12:00:00Z');
    expect(
      (await api('PATCH', `/subscriptions/${sub.id}`, { paymentMethodId: await savedMethod('payer-hard-02') })).status,
    ).toBe(200);
    await waitFor(
      () => succeededAmounts(sub.id),
      (amounts) => amounts.length >= 2,
      { what: 'collection after unpaid' },
    );
    const collected = await settledStatus(sub.id, (status) => status === 'active');
    expect(collected.currentPeriod).toEqual({ start: '2027-06-20T12:00:00.000Z', end: '2027-07-20T12:00:00.000Z' });
    expect(await succeededAmounts(sub.id)).toEqual([3_000, 3_000]);
    const owed = await waitFor(
      async () => (await periods(sub.id)).filter((p) => p.amount > 0).map((p) => [p.start.toISOString(), p.status]),
      (list) => list.every(([, status]) => status !== 'open'),
      { what: 'the periods to settle' },
    );
    expect(owed).toEqual([
      ['2027-03-08T12:00:00.000Z', 'paid'],
      ['2027-06-20T12:00:00.000Z', 'paid'],
    ]);
  }, 120_000);

  it('a run that decided to give a period up before a new card reopened it does not give it up again', async () => {
    const payer = 'payer-late-give-up';
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2027-08-01T12:00:00Z', payer);
    await cardStartsDeclining(paymentMethodId);
    await advance(clockId, '2027-09-01T13:00:00Z');
    await advance(clockId, '2027-09-09T00:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid', nextBillingAt: null });
    const owed = (await periods(sub.id)).at(-1)!;
    expect(owed).toMatchObject({ status: 'uncollectible', attempts: 5 });
    // Back to the moment before the give-up (the last retry failed, dunning not yet ended), so that two runs decide it.
    const { models } = system.ctx.db;
    await models.SubscriptionPeriod.updateOne({ _id: owed._id }, { $set: { status: 'open' } });
    await models.Subscription.updateOne(
      { _id: sub.id },
      { $set: { status: 'past_due', nextBillingAt: new Date('2027-09-08T12:00:00Z') } },
    );
    const now = new Date('2027-09-09T00:00:00Z');
    // Run B decides to give the period up, then waits in its uncollectible invoice's hook.
    let release!: () => void;
    let decided!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const decidedGivingUp = new Promise<void>((resolve) => (decided = resolve));
    const late = renewSubscription(
      {
        ...renewDeps(),
        onPeriodUncollectible: async () => {
          decided();
          await gate;
        },
      },
      sub.id,
      { now },
    );
    await decidedGivingUp;
    // Run A gives the period up and ends dunning; then the payer brings a new card, which reopens the period.
    expect(await renewSubscription(renewDeps(), sub.id, { now })).toBe('settled');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid' });
    const manage = {
      ...manageDepsFor({
        models,
        queues: system.ctx.queues,
        enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event),
      }),
      // The renewal it would queue is run B's own next round here.
      enqueueRenewal: async () => undefined,
    };
    expect(
      await resumeCollectionForPayer(manage, { _id: await savedMethod(payer), companyId, customerRef: payer }),
    ).toBe(1);
    expect(await models.SubscriptionPeriod.findById(owed._id).lean()).toMatchObject({ status: 'open' });
    // B goes on: the period it decided from has changed, so it decides again and collects with the new card.
    release();
    expect(await late).toBe('charging');
    expect(await models.SubscriptionPeriod.findById(owed._id).lean()).toMatchObject({ status: 'open', attempts: 6 });
    await settledStatus(sub.id, (status) => status === 'active');
    expect(await models.SubscriptionPeriod.findById(owed._id).lean()).toMatchObject({ status: 'paid', attempts: 6 });
  }, 120_000);

  /** The payer saves a new card (`setup_intent.succeeded`): how many of their subscriptions behind on payment took it. */
  async function payerSavesCard(payer: string, card: string) {
    const manage = manageDepsFor({
      models: system.ctx.db.models,
      queues: system.ctx.queues,
      enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event),
    });
    return resumeCollectionForPayer(manage, { _id: await savedMethod(payer, card), companyId, customerRef: payer });
  }

  /**
   * Unpaid on a clock: its first renewal declined until dunning gave the period up (`uncollectible`): after its four
   * retries (a soft decline), or at the policy window's end after one attempt (a hard decline).
   */
  async function unpaidOnClock(payer: string, decline: 'soft' | 'hard' = 'soft') {
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2027-08-01T12:00:00Z', payer);
    await cardStartsDeclining(
      paymentMethodId,
      decline === 'soft' ? 'pm_card_chargeDeclinedInsufficientFunds' : 'pm_card_chargeDeclinedExpiredCard',
    );
    await advance(clockId, '2027-09-01T13:00:00Z');
    await advance(clockId, '2027-09-09T00:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid', nextBillingAt: null });
    const owed = (await periods(sub.id)).at(-1)!;
    expect(owed).toMatchObject({ status: 'uncollectible', attempts: decline === 'soft' ? 5 : 1 });
    return { sub, clockId, owed };
  }

  it('a run that finds a new card already given up again leaves the subscription unpaid: no new cycle', async () => {
    const { sub, owed } = await unpaidOnClock('payer-given-up-again');
    // As a new card's resume leaves it (due now, to restart on collection) once another run has tried that card and
    // given the period up again: a run still due from the resume finds the period given up.
    const { models } = system.ctx.db;
    await models.Subscription.updateOne(
      { _id: sub.id },
      { $set: { nextBillingAt: new Date('2027-10-15T00:00:00Z'), restartOnCollection: true } },
    );
    const before = await payments(sub.id);
    expect(await renewSubscription(renewDeps(), sub.id, { now: new Date('2027-10-15T00:00:00Z') })).toBe('settled');
    expect(await subscription(sub.id)).toMatchObject({ status: 'unpaid', nextBillingAt: null });
    expect((await periods(sub.id)).map((p) => [p._id, p.status])).toEqual([
      [expect.any(String), 'paid'],
      [owed._id, 'uncollectible'],
    ]);
    expect(await payments(sub.id)).toHaveLength(before.length);
  }, 120_000);

  it("an unpaid subscription's new card that is declined is tried once, not once per retry the policy had", async () => {
    const payer = 'payer-unpaid-new-card-declined';
    // Given up at the window's end after one attempt: four of the policy's retries were never made.
    const { sub, owed } = await unpaidOnClock(payer, 'hard');
    const before = (await payments(sub.id)).length;
    expect(await payerSavesCard(payer, 'pm_card_chargeDeclinedInsufficientFunds')).toBe(1);
    await waitFor(
      () => payments(sub.id),
      (all) => all.length > before && all.slice(before).every((p) => p.status === 'failed'),
      { what: "the new card's attempt, declined" },
    );
    await settledStatus(sub.id, (status) => status === 'unpaid');
    await waitFor(
      () => subscription(sub.id),
      (s) => s.nextBillingAt === null,
      { what: 'nothing due any more' },
    );
    expect((await payments(sub.id)).length).toBe(before + 1);
    expect(await system.ctx.db.models.SubscriptionPeriod.findById(owed._id).lean()).toMatchObject({
      status: 'uncollectible',
    });
  }, 120_000);

  it('a new card declined late in the window is tried once; dunning goes on from the retry still ahead', async () => {
    const payer = 'payer-late-new-card';
    const { sub, clockId, paymentMethodId } = await subscribedOnClock('2027-08-01T12:00:00Z', payer);
    // Declined hard on Sep 1 at noon: no retry on that card, a wait for a new one until the window ends (Sep 8).
    await cardStartsDeclining(paymentMethodId, 'pm_card_chargeDeclinedExpiredCard');
    await advance(clockId, '2027-09-04T00:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'past_due', waitingFor: 'payment_method' });
    const before = (await payments(sub.id)).length;
    // Day 2.5: the retry of day 1 (Sep 2) had passed. The new card's attempt is the only charge now.
    expect(await payerSavesCard(payer, 'pm_card_chargeDeclinedInsufficientFunds')).toBe(1);
    const due = await waitFor(
      () => subscription(sub.id),
      // Past the resume (due now): the attempt settled and the next thing set, whatever it is.
      (s) => s.status !== 'past_due' || (s.nextBillingAt !== null && s.nextBillingAt > '2027-09-04T00:00:00.000Z'),
      { what: "the new card's attempt declined, and the next retry set" },
    );
    expect(due).toMatchObject({ status: 'past_due', nextBillingAt: '2027-09-04T12:00:00.000Z' });
    const attempts = async () =>
      (await payments(sub.id)).slice(before).map((p) => [p.status, p.subscription?.attempt?.at?.toISOString()]);
    expect(await attempts()).toEqual([['failed', '2027-09-04T00:00:00.000Z']]);
    // Then the retries of day 3 and 5 and 7 (Sep 4, 6, 8 at noon), and the end state.
    await advance(clockId, '2027-09-09T00:00:00Z');
    await settledStatus(sub.id, (status) => status === 'unpaid');
    expect(await attempts()).toEqual([
      ['failed', '2027-09-04T00:00:00.000Z'],
      ['failed', '2027-09-04T12:00:00.000Z'],
      ['failed', '2027-09-06T12:00:00.000Z'],
      ['failed', '2027-09-08T12:00:00.000Z'],
    ]);
  }, 120_000);

  it('a cancel at period end can be undone before the period ends: it renews as before', async () => {
    const { sub, clockId } = await subscribedOnClock('2027-05-01T12:00:00Z', 'payer-undo-01');
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'none' })).body).toMatchObject({
      error: { code: 'not_canceling' },
    });
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'period_end' })).status).toBe(200);
    const undone = await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'none' });
    expect(undone).toMatchObject({ status: 200, body: { cancelAtPeriodEnd: false, status: 'active' } });
    await advance(clockId, '2027-06-01T13:00:00Z');
    await chargesReach(sub.id, 2, 'the renewal after the undone cancel');
    expect((await subscription(sub.id)).status).toBe('active');
  }, 90_000);
});

describe('what is owed when a subscription ends (issue 19)', () => {
  const succeededPayments = async (id: string) => (await payments(id)).filter((p) => p.status === 'succeeded');
  const refundsOf = (paymentIds: string[]) =>
    system.ctx.db.models.Refund.find({ paymentId: { $in: paymentIds } }).lean();
  const documentsOf = (subscriptionId: string) => system.ctx.db.models.Invoice.find({ subscriptionId }).lean();

  /** Active on a $30 plan from midnight in New York on Jul 1 (a 31-day period), its first period paid. */
  const activeOnClock = (payer: string, amount = 3_000) => subscribedOnClock('2027-07-01T04:00:00Z', payer, { amount });

  async function changePlan(id: string, amount: number) {
    const changed = await api('PATCH', `/subscriptions/${id}`, {
      planId: await plan({ amount, name: `Plan ${amount}` }),
      prorationBehavior: 'create_prorations',
    });
    expect(changed.status).toBe(200);
    return changed.body.pendingProration as number;
  }

  /** Ended and settled: no pending balance, nothing due, nothing queued. */
  const settled = (id: string) =>
    waitFor(
      () => subscription(id),
      (s) => s.status === 'canceled' && !s.nextBillingAt && !s.pendingProration,
      { what: `subscription ${id} to be settled` },
    );

  it('an upgrade then cancel now: the prorated difference is charged once more, on its own paid invoice', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-01');
    await advance(clockId, '2027-07-16T04:00:00Z');
    // 16 of July's 31 days left, $30 → $60.
    const pending = await changePlan(sub.id, 6_000);
    expect(pending).toBe(Math.round((6_000 * 16) / 31) - Math.round((3_000 * 16) / 31));
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' })).body.status).toBe('canceled');

    await settled(sub.id);
    const charged = await waitFor(
      () => succeededPayments(sub.id),
      (made) => made.length === 2,
      { what: 'the final bill to be charged' },
    );
    expect(charged.map((p) => p.amount)).toEqual([3_000, pending]);
    const final = charged[1]!;
    const invoice = await waitFor(
      async () => (await documentsOf(sub.id)).find((d) => d.paymentId === final._id),
      (found) => found?.status === 'paid',
      { what: 'the final bill’s invoice' },
    );
    expect(invoice).toMatchObject({ kind: 'invoice', total: pending, amountPaid: pending });

    // A second sweep, a renewal run again, a month on the clock: nothing more is charged.
    expect(await renewSubscription(renewDeps(), sub.id)).toBe('not_due');
    await sweepRenewals({
      models: system.ctx.db.models,
      renewalsQueue: system.ctx.queues.renewals,
      logger: system.ctx.logger,
    });
    await advance(clockId, '2027-08-02T04:00:00Z');
    expect((await payments(sub.id)).map((p) => [p.amount, p.status])).toEqual([
      [3_000, 'succeeded'],
      [pending, 'succeeded'],
    ]);
    expect(await subscription(sub.id)).toMatchObject({ status: 'canceled', nextBillingAt: null });
    const actions = (await system.ctx.db.models.AuditEvent.find({ 'resource.id': sub.id }).lean()).map((e) => e.action);
    expect(actions).toEqual(expect.arrayContaining(['subscription.final_settled']));
  }, 90_000);

  it('a downgrade then cancel now: the credit is refunded against the last period’s payment, with a credit note', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-02', 6_000);
    await advance(clockId, '2027-07-21T04:00:00Z');
    // 11 of 31 days left, $60 → $10: a credit.
    const pending = await changePlan(sub.id, 1_000);
    expect(pending).toBe(Math.round((1_000 * 11) / 31) - Math.round((6_000 * 11) / 31));
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' })).body.status).toBe('canceled');

    await settled(sub.id);
    const [first] = await payments(sub.id);
    const [refund] = await waitFor(
      () => refundsOf([first!._id]),
      (made) => made.length === 1 && made[0]!.status === 'succeeded',
      { what: 'the credit to be refunded' },
    );
    expect(refund!.amount).toBe(-pending);
    const note = await waitFor(
      async () => (await documentsOf(sub.id)).find((d) => d.kind === 'credit_note'),
      (found) => found?.status === 'paid',
      { what: 'the refund’s credit note' },
    );
    expect(note).toMatchObject({ refundId: refund!._id, total: -pending });

    expect(await renewSubscription(renewDeps(), sub.id)).toBe('not_due');
    await advance(clockId, '2027-08-02T04:00:00Z');
    expect(await refundsOf([first!._id])).toHaveLength(1);
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([6_000]);
  }, 90_000);

  it('cancel at period end with an upgrade pending: settled at the period’s end, no renewal charged', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-03');
    await advance(clockId, '2027-07-16T04:00:00Z');
    const pending = await changePlan(sub.id, 6_000);
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'period_end' })).status).toBe(200);
    await advance(clockId, '2027-07-25T04:00:00Z');
    expect(await subscription(sub.id)).toMatchObject({ status: 'active', pendingProration: pending });
    expect(await payments(sub.id)).toHaveLength(1);

    await advance(clockId, '2027-08-01T05:00:00Z');
    const ended = await settled(sub.id);
    expect(ended.canceledAt).toBe('2027-08-01T04:00:00.000Z');
    expect((await succeededPayments(sub.id)).map((p) => p.amount)).toEqual([3_000, pending]);
    await advance(clockId, '2027-09-02T04:00:00Z');
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([3_000, pending]);
  }, 90_000);

  it('a declined final bill is not retried: it stays uncollectible, the subscription settled', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-06');
    await advance(clockId, '2027-07-16T04:00:00Z');
    const pending = await changePlan(sub.id, 6_000);
    const stored = (await system.ctx.db.models.Subscription.findById(sub.id).lean())!;
    await cardStartsDeclining(stored.paymentMethodId);
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' })).status).toBe(200);
    await settled(sub.id);
    const final = await waitFor(
      async () => (await periods(sub.id)).find((p) => p.amount === pending),
      (found) => found?.status === 'uncollectible',
      { what: 'the final bill to be given up' },
    );
    expect((await payments(sub.id)).map((p) => [p.amount, p.status])).toEqual([
      [3_000, 'succeeded'],
      [pending, 'failed'],
    ]);
    await advance(clockId, '2027-08-02T04:00:00Z');
    expect(await payments(sub.id)).toHaveLength(2);
    expect(
      await system.ctx.db.models.Invoice.countDocuments({ 'source.id': final!._id, status: { $ne: 'void' } }),
    ).toBe(0);
  }, 90_000);

  it('the api dies right after a cancel write: the renewal settles the credit, asking again while refunds are busy', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-05', 6_000);
    await advance(clockId, '2027-07-21T04:00:00Z');
    const pending = await changePlan(sub.id, 1_000);
    // The cancel as the api writes it, and nothing after it (no renewal queued).
    const canceledAt = new Date('2027-07-21T04:00:00Z');
    await system.ctx.db.models.Subscription.updateOne(
      { _id: sub.id },
      { $set: { status: 'canceled', canceledAt, nextBillingAt: canceledAt } },
    );
    const [first] = await payments(sub.id);
    const busy: RenewDeps = { ...renewDeps(), refundCredit: async () => ({ outcome: 'busy' }) };
    await expect(renewSubscription(busy, sub.id)).rejects.toThrow(/not recorded: busy/);
    expect(await subscription(sub.id)).toMatchObject({
      pendingProration: pending,
      nextBillingAt: canceledAt.toISOString(),
    });

    const refunding: RenewDeps = {
      ...renewDeps(),
      refundCredit: (payment, amount, idempotencyKey) =>
        requestRefund(
          {
            models: system.ctx.db.models,
            enqueueRefund: async (job, audit) => {
              await enqueueRefund(system.ctx.queues.refunds, job);
              await enqueueAuditEvent(system.ctx.queues.audit, audit);
            },
          },
          {
            payment,
            idempotencyKey,
            request: { amount, reason: 'requested_by_customer' },
            requestedBy: { type: 'service', id: 'renewals-worker' },
            requestId: `req_${idempotencyKey}`,
          },
        ),
    };
    await Promise.all([renewSubscription(refunding, sub.id), renewSubscription(refunding, sub.id)]);
    await renewSubscription(refunding, sub.id);
    await settled(sub.id);
    const refunds = await waitFor(
      () => refundsOf([first!._id]),
      (made) => made.length === 1 && made[0]!.status === 'succeeded',
      { what: 'the credit to be refunded once' },
    );
    expect(refunds.map((r) => r.amount)).toEqual([-pending]);

    // A crash before the balance was taken off, and the balance changed meanwhile: its refund is found, not made again.
    const stored = (await system.ctx.db.models.Subscription.findById(sub.id).lean())!;
    await system.ctx.db.models.Subscription.updateOne(
      { _id: sub.id },
      {
        $set: { pendingProration: pending + 100, nextBillingAt: canceledAt },
        $pull: { prorationsApplied: stored.prorationsApplied!.at(-1)! },
      },
    );
    await renewSubscription(refunding, sub.id);
    await settled(sub.id);
    expect((await refundsOf([first!._id])).map((r) => r.amount)).toEqual([-pending]);
  }, 90_000);

  it('a settlement killed after its final bill was charged, before the balance was zeroed: the next run charges nothing', async () => {
    const { clockId, sub } = await activeOnClock('payer-final-04');
    await advance(clockId, '2027-07-16T04:00:00Z');
    const pending = await changePlan(sub.id, 6_000);
    expect((await api('PATCH', `/subscriptions/${sub.id}`, { cancelAt: 'now' })).status).toBe(200);
    await settled(sub.id);
    await waitFor(
      () => succeededPayments(sub.id),
      (made) => made.length === 2,
      { what: 'the final bill to be charged' },
    );
    // Back to what it was after the final bill's charge, before the balance and the marker were written.
    const stored = (await system.ctx.db.models.Subscription.findById(sub.id).lean())!;
    const finalId = stored.prorationsApplied!.at(-1)!;
    await system.ctx.db.models.Subscription.updateOne(
      { _id: sub.id },
      {
        $set: { pendingProration: pending, nextBillingAt: stored.canceledAt },
        $pull: { prorationsApplied: finalId },
      },
    );
    await Promise.all([renewSubscription(renewDeps(), sub.id), renewSubscription(renewDeps(), sub.id)]);
    expect(await subscription(sub.id)).toMatchObject({ status: 'canceled', nextBillingAt: null });
    expect((await subscription(sub.id)).pendingProration ?? 0).toBe(0);
    expect((await payments(sub.id)).map((p) => p.amount)).toEqual([3_000, pending]);
  }, 90_000);
});
