import { ulid } from 'ulid';
import { invoiceIdFor } from '../../domain/invoice-number';
import { createCompany, devAttestation } from '../../models/companies';
import { periodId } from '../../models/subscription.model';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment } from '../support/records';

/**
 * A crash between settling money and issuing its invoice loses no record: the outbox sweep issues the missing
 * document (here: a one-off payment and a subscription period settled by a process that stopped before its hook).
 */
let system: InProcessSystem;
let companyId: string;

beforeAll(async () => {
  // The sweep runs every 200 ms and takes anything older than 1 ms.
  system = await startInProcessSystem('invoice_sweep', { OUTBOX_SWEEP_EVERY_MS: '200', OUTBOX_STALE_AFTER_MS: '1' });
  companyId = await createCompany(system.ctx.db, {
    name: 'Cedar Hill Pediatrics',
    stripeSecretKey: 'sk_test_51CedarHillKey000',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  await system?.close();
});

const storedInvoice = (invoiceId: string) =>
  waitFor(
    () => system.ctx.db.models.Invoice.findById(invoiceId).lean(),
    (invoice) => invoice?.documentStatus === 'stored',
    { what: `invoice ${invoiceId} to be issued and rendered by the sweep` },
  );

it('issues the invoice of a payment that succeeded in a process that stopped before invoicing it', async () => {
  const payment = await insertPayment(system.ctx.db.models, {
    companyId,
    status: 'succeeded',
    amount: 4_200,
    serviceCategory: 'office_visit',
    completedAt: new Date(),
  });
  const invoice = await storedInvoice(invoiceIdFor({ type: 'payment', id: payment._id }));
  expect(invoice).toMatchObject({ status: 'paid', total: 4_200, paymentId: payment._id });
  expect(invoice?.number).toMatch(/^INV-\d{4}-000001$/);
});

it('issues the invoice of a paid subscription period whose hook never ran', async () => {
  const { models } = system.ctx.db;
  const start = new Date('2026-06-01T00:00:00Z');
  const subscriptionId = `sub_${ulid()}`;
  await models.Subscription.insertMany([
    {
      _id: subscriptionId,
      companyId,
      planId: `plan_${ulid()}`,
      customerRef: 'payer-sweep-01',
      paymentMethodId: `spm_${'a'.repeat(32)}`,
      status: 'active',
      amount: 3_000,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
      cycle: { anchor: start, timeZone: 'UTC' },
      currentPeriod: { index: 0, start, end: new Date('2026-07-01T00:00:00Z') },
      cancelAtPeriodEnd: false,
      idempotencyKey: `sweep-${ulid()}`,
      requestHash: 'x',
      requestedBy: { type: 'service', id: 'test' },
      requestId: 'req_sweep',
    },
  ]);
  const period = periodId(subscriptionId, start);
  await models.SubscriptionPeriod.create({
    _id: period,
    companyId,
    subscriptionId,
    index: 0,
    start,
    end: new Date('2026-07-01T00:00:00Z'),
    amount: 3_000,
    currency: 'usd',
    status: 'paid',
    attempts: 1,
    paidAt: start,
  });
  const invoice = await storedInvoice(invoiceIdFor({ type: 'subscription_period', id: period }));
  expect(invoice).toMatchObject({ status: 'paid', total: 3_000, subscriptionId });
});
