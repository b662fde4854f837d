import { setTimeout as sleep } from 'node:timers/promises';
import { requestPayment } from '../application/payments/request-payment';
import { requestRefund } from '../application/refunds/request-refund';
import {
  createPlan,
  createSubscription,
  manageDepsFor,
  type ManageDeps,
} from '../application/subscriptions/manage-subscriptions';
import { requestClockAdvance } from '../application/subscriptions/test-clocks';
import type { AuditEventInput } from '../domain/audit-event';
import { DEFAULT_DUNNING_POLICY } from '../domain/dunning';
import type { Database } from '../models';
import type { PaymentRecord } from '../models/payment.model';
import { invoiceSettingsId } from '../models/invoice-settings.model';
import { savedPaymentMethodId } from '../models/saved-payment-method.model';
import type { SubscriptionRecord } from '../models/subscription.model';
import type { Queues } from '../queues';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { enqueueCharge } from '../queues/charges.queue';
import { enqueueRefund } from '../queues/refunds.queue';
import { enqueueClockAdvance } from '../queues/renewals.queue';

const DEMO_CLOCK_ID = `clock_${'01JDEMO'.padEnd(26, '0')}`;
const DEMO_UNTIL = new Date('2027-02-05T16:00:00Z');

/**
 * Development only: a demo practice that looks alive — two offices with their letterheads, two plans, four payers with saved cards,
 * subscriptions on a test clock (three paid for two months, one in dunning), one-off payments and a refund — so the
 * API, the dashboard and the documents have something to show. Written through the same use cases the api uses;
 * the running workers do the charging (this waits for them). Safe to run again: every write is idempotent.
 */
export async function seedDemo(
  deps: { db: Pick<Database, 'models' | 'encryption'>; queues: Queues; log: (line: string) => void },
  companyId: string,
): Promise<void> {
  const { models, encryption } = deps.db;
  const { queues, log } = deps;
  const actor = { type: 'user' as const, id: 'demo-seed' };
  const enqueueAudit = (event: AuditEventInput) => enqueueAuditEvent(queues.audit, event);
  const manage: ManageDeps = manageDepsFor({ models, queues, enqueueAudit });
  const must = <T extends { outcome: string }>(what: string, result: T): Exclude<T, { outcome: 'refused' }> => {
    if (result.outcome === 'refused') throw new Error(`${what}: ${JSON.stringify(result)}`);
    return result as Exclude<T, { outcome: 'refused' }>;
  };
  if (!(await models.Company.exists({ _id: companyId })))
    throw new Error(`no company ${companyId}: run dev-setup first`);
  const seeded = await models.TestClock.findById(DEMO_CLOCK_ID, { frozenTime: 1 }).lean();
  if (seeded && seeded.frozenTime >= DEMO_UNTIL) {
    log(`the demo practice is already there (test clock ${DEMO_CLOCK_ID})`);
    return;
  }

  await models.BillingSettings.updateOne(
    { _id: companyId },
    { $set: { timeZone: 'America/New_York', dunning: DEFAULT_DUNNING_POLICY, updatedBy: actor } },
    { upsert: true },
  );
  // Invoices: the practice's prefix and letterhead, each office its own address.
  const letterheads = [
    { officeId: undefined, name: 'Demo Family Practice', address: ['100 Harbor Road', 'Springfield, IL 62701'] },
    { officeId: 'north', name: 'Demo Family Practice — North', address: ['12 Lake Avenue', 'Springfield, IL 62702'] },
    { officeId: 'south', name: 'Demo Family Practice — South', address: ['480 Mill Street', 'Springfield, IL 62704'] },
  ];
  for (const { officeId, name, address } of letterheads) {
    await models.InvoiceSettings.updateOne(
      { _id: invoiceSettingsId(companyId, officeId) },
      {
        $set: {
          companyId,
          ...(officeId ? { officeId } : { numberPrefix: 'DFP' }),
          letterhead: { name, address },
          updatedBy: actor,
        },
      },
      { upsert: true },
    );
  }

  const plan = async (key: string, request: Parameters<typeof createPlan>[1]['request']) =>
    must('plan', await createPlan(manage, { companyId, idempotencyKey: `demo-plan-${key}`, request, actor })).plan;
  const gold = await plan('gold', {
    category: 'membership',
    name: 'Gold membership',
    amount: 3_000,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    trialDays: 0,
  });
  const installments = await plan('installments', {
    category: 'payment_plan',
    name: '12-month payment plan',
    amount: 10_000,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    trialDays: 0,
    officeIds: ['south'],
  });
  log(`plans: ${gold._id} (Gold membership, $30.00/month), ${installments._id} (payment plan, $100.00/month, south)`);

  // Saved cards, as setup_intent.succeeded stores them (opaque payer references only).
  const payers = [
    { ref: 'payer-1001', office: 'north', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
    { ref: 'payer-1002', office: 'south', card: 'pm_card_mastercard', brand: 'mastercard', last4: '4444' },
    { ref: 'payer-1003', office: 'north', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
    { ref: 'payer-1004', office: 'south', card: 'pm_card_visa', brand: 'visa', last4: '4242' },
  ];
  const methods = new Map<string, string>();
  for (const payer of payers) {
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

  // Subscriptions on a test clock: their first month now, the second after the clock moves a month.
  let clock = await models.TestClock.findById(DEMO_CLOCK_ID).lean();
  if (!clock) {
    const created = await models.TestClock.create({
      _id: DEMO_CLOCK_ID,
      companyId,
      frozenTime: new Date('2027-01-04T15:00:00Z'),
      status: 'ready',
    });
    clock = created.toObject();
  }
  const subscriptions: SubscriptionRecord[] = [];
  for (const [i, payer] of payers.entries()) {
    const result = must(
      'subscription',
      await createSubscription(manage, {
        companyId,
        idempotencyKey: `demo-subscription-${payer.ref}`,
        request: {
          planId: i === 1 ? installments._id : gold._id,
          customerRef: payer.ref,
          paymentMethodId: methods.get(payer.ref)!,
          officeId: payer.office,
          testClockId: clock._id,
        },
        actor,
        requestId: `req_demo_${payer.ref}`,
      }),
    );
    subscriptions.push(result.subscription);
  }
  const settled = async (what: string, done: () => Promise<boolean>) => {
    for (let i = 0; i < 600; i += 1) {
      if (await done()) return;
      await sleep(100);
    }
    throw new Error(`${what} did not happen within a minute: are the workers running (npm run dev)?`);
  };
  await settled(
    'the first month of each subscription',
    async () =>
      (await models.Subscription.countDocuments({
        _id: { $in: subscriptions.map((s) => s._id) },
        status: 'active',
      })) === subscriptions.length,
  );
  log(`subscriptions on test clock ${clock._id}: ${subscriptions.map((s) => s._id).join(', ')} (first month paid)`);

  // payer-1004's bank starts declining; a month later three renew and one goes into dunning.
  await models.SavedPaymentMethod.updateOne(
    { _id: methods.get('payer-1004') },
    { $set: { stripePaymentMethodId: await encryption.encrypt(companyId, 'pm_card_chargeDeclinedInsufficientFunds') } },
  );
  const current = await models.TestClock.findById(clock._id).lean();
  const target = DEMO_UNTIL;
  if (current && current.frozenTime < target) {
    const advanced = await requestClockAdvance(models, { companyId, testClockId: clock._id, to: target });
    if (advanced.outcome === 'advancing') await enqueueClockAdvance(queues.renewals, clock._id, target);
  }
  await settled(
    'the test clock to reach February',
    async () => (await models.TestClock.findById(clock._id).lean())?.status === 'ready',
  );
  log('a month later: three renewed, payer-1004 is past_due (dunning retries on days 1, 3, 5 and 7)');

  // One-off payments at the front desk, and a refund of one of them.
  const paid: PaymentRecord[] = [];
  for (const [i, visit] of [
    { amount: 2_500, category: 'copay', office: 'north' },
    { amount: 12_000, category: 'office_visit', office: 'south' },
    { amount: 4_500, category: 'lab_services', office: 'north' },
  ].entries()) {
    const result = await requestPayment(
      {
        models,
        enqueuePayment: (payment) =>
          enqueueCharge(queues.charges, { paymentId: payment._id, requestId: payment.requestId }),
      },
      {
        companyId,
        idempotencyKey: `demo-payment-${i}`,
        request: {
          amount: visit.amount,
          currency: 'usd',
          customer: `cus_demopayer100${i + 1}`,
          paymentMethod: 'pm_card_visa',
          officeId: visit.office,
          serviceCategory: visit.category as 'copay',
        },
        requestedBy: { type: 'service', id: 'demo-seed' },
        requestId: `req_demo_payment_${i}`,
      },
    );
    if (result.outcome !== 'accepted') throw new Error(`demo payment: ${result.outcome}`);
    paid.push(result.payment);
  }
  await settled(
    'the one-off payments',
    async () =>
      (await models.Payment.countDocuments({ _id: { $in: paid.map((p) => p._id) }, status: 'succeeded' })) ===
      paid.length,
  );
  const refunded = (await models.Payment.findById(paid[1]!._id).lean())!;
  const refund = await requestRefund(
    {
      models,
      enqueueRefund: async (job, audit) => {
        await enqueueRefund(queues.refunds, job);
        await enqueueAudit(audit);
      },
    },
    {
      payment: refunded,
      idempotencyKey: 'demo-refund-0',
      request: { amount: 4_000, reason: 'requested_by_customer' },
      requestedBy: { type: 'service', id: 'demo-seed' },
      requestId: 'req_demo_refund_0',
    },
  );
  if (refund.outcome !== 'accepted') throw new Error(`demo refund: ${refund.outcome}`);
  log(`payments: ${paid.map((p) => p._id).join(', ')}; refund ${refund.refund._id} of $40.00 on ${refunded._id}`);
}
