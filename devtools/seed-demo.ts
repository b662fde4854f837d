import { setTimeout as sleep } from 'node:timers/promises';
import type { HipaaBillingClient } from '../clients/typescript/src';
import { DEFAULT_DUNNING_POLICY } from '../domain/dunning';
import type { Database } from '../models';
import { savedPaymentMethodId } from '../models/saved-payment-method.model';

const DEMO_START = '2027-01-04T15:00:00.000Z';
const DEMO_UNTIL = '2027-02-05T16:00:00.000Z';

const PAYERS = [
  { ref: 'payer-1001', office: 'north', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
  { ref: 'payer-1002', office: 'south', card: 'pm_card_mastercard', brand: 'mastercard', last4: '4444' },
  { ref: 'payer-1003', office: 'north', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
  { ref: 'payer-1004', office: 'south', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
] as const;

export interface SeedDemoDeps {
  /** The typed client (`@hipaa-billing/client`) against the running api, with a token of the demo company. */
  client: HipaaBillingClient;
  /**
   * Only for what has no api route: saved cards, which Stripe's `setup_intent.succeeded` webhooks create after a payer's
   * browser confirms a SetupIntent (a card the demo cannot type), and a card that starts declining (the bank's doing).
   */
  db: Pick<Database, 'models' | 'encryption'>;
  log: (line: string) => void;
}

/**
 * Development only: a demo practice that looks alive — two offices with their letterheads, two plans, four payers with
 * saved cards, subscriptions on a test clock (three paid for two months, one in dunning), one-off payments and a refund
 * — so the API, the dashboard and the documents have something to show. Written through the api with the typed
 * client, as an upstream app would (docs/integrating.md); the running workers do the charging (this waits for them).
 * Safe to run again: every POST carries a fixed `Idempotency-Key`, every PUT sets the same values.
 */
export async function seedDemo(deps: SeedDemoDeps, companyId: string): Promise<void> {
  const { client, log } = deps;
  const path = { companyId };
  const settled = async (what: string, done: () => Promise<boolean>) => {
    for (let i = 0; i < 300; i += 1) {
      if (await done()) return;
      await sleep(200);
    }
    throw new Error(`${what} did not happen within a minute: are the workers running (npm run dev)?`);
  };

  // A run that finished before left the payers' subscriptions on a clock already in February.
  const first = await client.GET('/v1/companies/{companyId}/subscriptions', {
    params: { path, query: { customerRef: PAYERS[0].ref } },
  });
  const existingClock = first.data?.items.find((s) => s.testClockId)?.testClockId;
  if (existingClock) {
    const { data: clock } = await client.GET('/v1/companies/{companyId}/test-clocks/{testClockId}', {
      params: { path: { companyId, testClockId: existingClock } },
    });
    if (clock && clock.frozenTime >= DEMO_UNTIL && clock.status === 'ready') {
      log(`the demo practice is already there (test clock ${existingClock})`);
      return;
    }
  }

  await client.PUT('/v1/companies/{companyId}/billing-settings', {
    params: { path },
    body: {
      timeZone: 'America/New_York',
      dunning: { ...DEFAULT_DUNNING_POLICY, retryDelaysDays: [...DEFAULT_DUNNING_POLICY.retryDelaysDays] },
    },
  });
  // Invoices: the practice's prefix and letterhead, each office its own address.
  await client.PUT('/v1/companies/{companyId}/invoice-settings', {
    params: { path },
    body: {
      numberPrefix: 'DFP',
      letterhead: { name: 'Demo Family Practice', address: ['100 Harbor Road', 'Springfield, IL 62701'] },
    },
  });
  for (const { officeId, name, address } of [
    { officeId: 'north', name: 'Demo Family Practice — North', address: ['12 Lake Avenue', 'Springfield, IL 62702'] },
    { officeId: 'south', name: 'Demo Family Practice — South', address: ['480 Mill Street', 'Springfield, IL 62704'] },
  ]) {
    await client.PUT('/v1/companies/{companyId}/offices/{officeId}/invoice-settings', {
      params: { path: { companyId, officeId } },
      body: { letterhead: { name, address } },
    });
  }

  const plan = async (key: string, body: { name: string; amount: number; officeIds?: string[] }) => {
    const { data } = await client.POST('/v1/companies/{companyId}/plans', {
      params: { path, header: { 'Idempotency-Key': `demo-plan-${key}` } },
      body: {
        category: body.officeIds ? 'payment_plan' : 'membership',
        currency: 'usd',
        interval: { unit: 'month', count: 1 },
        trialDays: 0,
        ...body,
      },
    });
    return data!.id;
  };
  const gold = await plan('gold', { name: 'Gold membership', amount: 3_000 });
  const installments = await plan('installments', {
    name: '12-month payment plan',
    amount: 10_000,
    officeIds: ['south'],
  });
  log(`plans: ${gold} (Gold membership, $30.00/month), ${installments} (payment plan, $100.00/month, south)`);

  const methods = await savedCards(deps, companyId);

  // Subscriptions on a test clock: their first month now, the second after the clock moves a month.
  const testClockId =
    existingClock ??
    (await client.POST('/v1/companies/{companyId}/test-clocks', { params: { path }, body: { frozenTime: DEMO_START } }))
      .data!.id;
  const subscriptions: string[] = [];
  for (const [i, payer] of PAYERS.entries()) {
    const { data } = await client.POST('/v1/companies/{companyId}/subscriptions', {
      params: { path, header: { 'Idempotency-Key': `demo-subscription-${payer.ref}` } },
      body: {
        planId: i === 1 ? installments : gold,
        customerRef: payer.ref,
        paymentMethodId: methods.get(payer.ref)!,
        officeId: payer.office,
        testClockId,
      },
    });
    subscriptions.push(data!.id);
  }
  await settled('the first month of each subscription', async () => {
    const states = await Promise.all(
      subscriptions.map((subscriptionId) =>
        client.GET('/v1/companies/{companyId}/subscriptions/{subscriptionId}', {
          params: { path: { companyId, subscriptionId } },
        }),
      ),
    );
    return states.every(({ data }) => data?.status !== 'incomplete');
  });
  log(`subscriptions on test clock ${testClockId}: ${subscriptions.join(', ')} (first month paid)`);

  // payer-1004's bank starts declining; a month later three renew and one goes into dunning.
  await deps.db.models.SavedPaymentMethod.updateOne(
    { _id: methods.get('payer-1004') },
    {
      $set: {
        stripePaymentMethodId: await deps.db.encryption.encrypt(companyId, 'pm_card_chargeDeclinedInsufficientFunds'),
      },
    },
  );
  const clockPath = { companyId, testClockId };
  const clockNow = (
    await client.GET('/v1/companies/{companyId}/test-clocks/{testClockId}', { params: { path: clockPath } })
  ).data!;
  if (clockNow.frozenTime < DEMO_UNTIL) {
    await client.POST('/v1/companies/{companyId}/test-clocks/{testClockId}/advance', {
      params: { path: clockPath },
      body: { frozenTime: DEMO_UNTIL },
    });
  }
  await settled('the test clock to reach February', async () => {
    const { data } = await client.GET('/v1/companies/{companyId}/test-clocks/{testClockId}', {
      params: { path: clockPath },
    });
    return data?.status === 'ready' && data.frozenTime >= DEMO_UNTIL;
  });
  log('a month later: three renewed, payer-1004 is past_due (dunning retries on days 1, 3, 5 and 7)');

  // One-off payments at the front desk, and a refund of one of them.
  const paid: string[] = [];
  for (const [i, visit] of [
    { amount: 2_500, category: 'copay', office: 'north' },
    { amount: 12_000, category: 'office_visit', office: 'south' },
    { amount: 4_500, category: 'lab_services', office: 'north' },
  ].entries()) {
    const { data } = await client.POST('/v1/companies/{companyId}/payments', {
      params: { path, header: { 'Idempotency-Key': `demo-payment-${i}` } },
      body: {
        amount: visit.amount,
        currency: 'usd',
        customer: `cus_demopayer100${i + 1}`,
        paymentMethod: 'pm_card_visa',
        officeId: visit.office,
        serviceCategory: visit.category as 'copay',
      },
    });
    const outcome = await client.waitForPayment(companyId, data!.id, { timeoutMs: 60_000, intervalMs: 200 });
    if (outcome.status !== 'succeeded') throw new Error(`demo payment ${outcome.id}: ${outcome.status}`);
    paid.push(outcome.id);
  }
  const { data: refund } = await client.POST('/v1/companies/{companyId}/payments/{paymentId}/refunds', {
    params: { path: { companyId, paymentId: paid[1]! }, header: { 'Idempotency-Key': 'demo-refund-0' } },
    body: { amount: 4_000, reason: 'requested_by_customer' },
  });
  log(`payments: ${paid.join(', ')}; refund ${refund!.id} of $40.00 on ${paid[1]}`);
}

/** Saved cards, as `setup_intent.succeeded` stores them (opaque payer references only): no api route makes one. */
async function savedCards(deps: SeedDemoDeps, companyId: string): Promise<Map<string, string>> {
  const { models, encryption } = deps.db;
  const methods = new Map<string, string>();
  for (const payer of PAYERS) {
    const id = savedPaymentMethodId(companyId, `seti_demo_${payer.ref}`);
    methods.set(payer.ref, id);
    if (await models.SavedPaymentMethod.exists({ _id: id })) continue;
    await models.SavedPaymentMethod.create({
      _id: id,
      companyId,
      officeId: payer.office,
      customerRef: payer.ref,
      stripeCustomerId: await encryption.encrypt(companyId, `cus_demo${payer.ref.replace('-', '')}`),
      stripePaymentMethodId: await encryption.encrypt(companyId, payer.card),
      card: { brand: payer.brand, last4: payer.last4, expMonth: 12, expYear: 2030 },
      usage: 'off_session',
      status: 'active',
      savedBy: 'demo-seed',
    });
  }
  return methods;
}
