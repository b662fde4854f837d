import { ulid } from 'ulid';
import { createCompany, devAttestation } from '../../models/companies';
import { recordAttestation, updatePaymentSettings } from '../../models/payment-config';
import type { PaymentRecord } from '../../models/payment.model';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment, insertRefund } from '../support/records';
import { deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

/**
 * Issue 12 §3: a verified event applies only to the Stripe object we created, from the configuration that serves
 * the record, in its key's mode. Everything else is recorded as ignored with a reason and audited.
 */
let system: InProcessSystem;

const UNATTESTED_SECRET = 'whsec_BindingUnattested0001';
const TEST_SECRET = 'whsec_BindingTestMode00001';
const LIVE_SECRET = 'whsec_BindingLiveMode00001';
const NORTH_SECRET = 'whsec_BindingOfficeNorth01';
const SOUTH_SECRET = 'whsec_BindingOfficeSouth01';

let unattested: string;
let testMode: string;
let liveMode: string;
let perOffice: string;

function intentEvent(
  type: string,
  intentId: string,
  paymentId: string,
  options: { livemode?: boolean; companyId?: string } = {},
) {
  return {
    ...stripeEventEnvelope(`evt_${ulid()}`, type, {
      id: intentId,
      object: 'payment_intent',
      amount: 4_200,
      currency: 'usd',
      status: type === 'payment_intent.succeeded' ? 'succeeded' : 'processing',
      livemode: options.livemode ?? false,
      metadata: { payment_id: paymentId, ...(options.companyId ? { company_id: options.companyId } : {}) },
    }),
    livemode: options.livemode ?? false,
  };
}

async function deliverAndFinish(event: { id: string }, configId: string, secret: string) {
  const response = await deliverSigned(system.url, configId, event, { secret });
  expect(response.status).toBe(200);
  const row = await waitFor(
    () => system.ctx.db.models.WebhookEvent.findById(event.id, { payload: 0 }).lean(),
    (found) => Boolean(found && found.status !== 'received'),
    { what: `stripe event ${event.id} to be processed` },
  );
  return row!;
}

async function ignoredAudit(companyId: string, eventId: string, reason: string, resourceId: string) {
  const events = await waitFor(
    () =>
      system.ctx.db.models.AuditEvent.find({
        companyId,
        action: 'webhook.ignored',
        'resource.id': resourceId,
      }).lean(),
    (found) => found.some((event) => event.reason === reason && event.jobId?.includes(eventId)),
    { what: `webhook.ignored ${reason} for ${resourceId}` },
  );
  return events.find((event) => event.reason === reason)!;
}

async function paymentWithIntent(companyId: string, fields: Partial<PaymentRecord> = {}) {
  const intentId = `pi_${ulid()}`;
  const payment = await insertPayment(system.ctx.db.models, {
    companyId,
    status: 'processing',
    stripePaymentIntentId: intentId,
    ...fields,
  });
  return { paymentId: payment._id, intentId };
}

const storedPayment = (paymentId: string) => system.ctx.db.models.Payment.findById(paymentId).lean();

beforeAll(async () => {
  system = await startInProcessSystem('stripe_event_binding');
  const { db } = system.ctx;

  unattested = await createCompany(db, { name: 'Unattested Clinic', stripeSecretKey: 'sk_test_51UnattestedKey0001' });
  await updatePaymentSettings(db, { companyId: unattested }, { webhookSigningSecrets: [UNATTESTED_SECRET] }, 'test');

  testMode = await createCompany(db, {
    name: 'Test Mode Clinic',
    stripeSecretKey: 'sk_test_51TestModeKey000001',
    compliance: devAttestation('test'),
  });
  await updatePaymentSettings(db, { companyId: testMode }, { webhookSigningSecrets: [TEST_SECRET] }, 'test');

  liveMode = await createCompany(db, {
    name: 'Live Mode Clinic',
    stripeSecretKey: 'rk_live_51LiveModeKey000001',
    compliance: devAttestation('test'),
  });
  await updatePaymentSettings(db, { companyId: liveMode }, { webhookSigningSecrets: [LIVE_SECRET] }, 'test');

  perOffice = await createCompany(db, { name: 'Two Office Practice', mode: 'office' });
  for (const [officeId, secret, key] of [
    ['off_north', NORTH_SECRET, 'sk_test_51NorthOfficeKey001'],
    ['off_south', SOUTH_SECRET, 'sk_test_51SouthOfficeKey001'],
  ] as const) {
    await updatePaymentSettings(
      db,
      { companyId: perOffice, officeId },
      { secretKey: key, accountId: `acct_${officeId.slice(4)}`, webhookSigningSecrets: [secret] },
      'test',
    );
    await recordAttestation(db, { companyId: perOffice, officeId }, devAttestation('test'));
  }
});

afterAll(async () => {
  await system.close();
});

describe('binding Stripe events to what we created', () => {
  it('ignores a signed payment_intent.succeeded for a PaymentIntent we never created, naming a payment that failed gateway_not_attested', async () => {
    const token = await system.token(unattested);
    const posted = await fetch(`${system.url}/v1/companies/${unattested}/payments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': ulid() },
      body: JSON.stringify({
        amount: 4_200,
        currency: 'usd',
        customer: 'cus_Patient0001',
        paymentMethod: 'pm_card_visa',
      }),
    });
    expect(posted.status).toBe(202);
    const paymentId = ((await posted.json()) as { id: string }).id;
    const failed = await waitFor(
      () => storedPayment(paymentId),
      (payment) => payment?.status === 'failed',
      { what: `payment ${paymentId} to fail` },
    );
    expect(failed).toMatchObject({ failure: { code: 'gateway_not_attested' } });
    expect(failed?.stripePaymentIntentId).toBeUndefined();

    const forged = intentEvent('payment_intent.succeeded', `pi_${ulid()}`, paymentId, { companyId: unattested });
    const row = await deliverAndFinish(forged, unattested, UNATTESTED_SECRET);
    expect(row).toMatchObject({ status: 'ignored', outcome: { reason: 'intent_unknown', paymentId } });
    expect(await storedPayment(paymentId)).toMatchObject({
      status: 'failed',
      failure: { code: 'gateway_not_attested' },
    });
    expect(await ignoredAudit(unattested, forged.id, 'intent_unknown', paymentId)).toMatchObject({
      resource: { type: 'payment', id: paymentId },
      actor: { type: 'system', id: 'stripe-events-worker' },
    });
  });

  it('ignores a PaymentIntent event for a queued payment that has no PaymentIntent yet (intent_unknown)', async () => {
    const payment = await insertPayment(system.ctx.db.models, { companyId: testMode, status: 'queued' });
    const event = intentEvent('payment_intent.succeeded', `pi_${ulid()}`, payment._id);
    expect(await deliverAndFinish(event, testMode, TEST_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'intent_unknown' },
    });
    expect((await storedPayment(payment._id))?.status).toBe('queued');
  });

  it('ignores an event for another PaymentIntent than the one recorded (intent_mismatch)', async () => {
    const { paymentId } = await paymentWithIntent(testMode);
    const event = intentEvent('payment_intent.succeeded', `pi_${ulid()}`, paymentId);
    expect(await deliverAndFinish(event, testMode, TEST_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'intent_mismatch' },
    });
    expect((await storedPayment(paymentId))?.status).toBe('processing');
  });

  it('ignores a live-mode event for a test-mode key, and a test-mode event for a live key (livemode_mismatch)', async () => {
    const test = await paymentWithIntent(testMode);
    const live = intentEvent('payment_intent.succeeded', test.intentId, test.paymentId, { livemode: true });
    expect(await deliverAndFinish(live, testMode, TEST_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'livemode_mismatch' },
    });
    expect((await storedPayment(test.paymentId))?.status).toBe('processing');
    await ignoredAudit(testMode, live.id, 'livemode_mismatch', test.paymentId);

    const inLive = await paymentWithIntent(liveMode);
    const testEvent = intentEvent('payment_intent.succeeded', inLive.intentId, inLive.paymentId, { livemode: false });
    expect(await deliverAndFinish(testEvent, liveMode, LIVE_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'livemode_mismatch' },
    });
    // The same intent in the key's own mode applies.
    const liveEvent = intentEvent('payment_intent.succeeded', inLive.intentId, inLive.paymentId, { livemode: true });
    expect(await deliverAndFinish(liveEvent, liveMode, LIVE_SECRET)).toMatchObject({ status: 'applied' });
    expect((await storedPayment(inLive.paymentId))?.status).toBe('succeeded');
  });

  it("ignores an event verified by another office's configuration (office_mismatch); the payment's own office applies", async () => {
    const { paymentId, intentId } = await paymentWithIntent(perOffice, { officeId: 'off_north' });
    const fromSouth = intentEvent('payment_intent.succeeded', intentId, paymentId);
    expect(await deliverAndFinish(fromSouth, `${perOffice}.off_south`, SOUTH_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'office_mismatch', paymentId },
    });
    expect((await storedPayment(paymentId))?.status).toBe('processing');
    await ignoredAudit(perOffice, fromSouth.id, 'office_mismatch', paymentId);

    const fromNorth = intentEvent('payment_intent.succeeded', intentId, paymentId);
    expect(await deliverAndFinish(fromNorth, `${perOffice}.off_north`, NORTH_SECRET)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'processing_to_succeeded' },
    });
  });

  it('ignores a dispute on our PaymentIntent verified by another office (office_mismatch) or in the wrong mode', async () => {
    const { paymentId, intentId } = await paymentWithIntent(perOffice, { officeId: 'off_north', status: 'succeeded' });
    const dispute = (livemode = false) => ({
      ...stripeEventEnvelope(`evt_${ulid()}`, 'charge.dispute.created', {
        id: `dp_${ulid()}`,
        object: 'dispute',
        amount: 1_200,
        currency: 'usd',
        payment_intent: intentId,
        reason: 'fraudulent',
        status: 'needs_response',
        created: Math.floor(Date.now() / 1000) - 60,
      }),
      livemode,
    });
    const fromSouth = dispute();
    expect(await deliverAndFinish(fromSouth, `${perOffice}.off_south`, SOUTH_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'office_mismatch', paymentId },
    });
    const live = dispute(true);
    expect(await deliverAndFinish(live, `${perOffice}.off_north`, NORTH_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'livemode_mismatch', paymentId },
    });
    expect((await storedPayment(paymentId))?.dispute).toBeUndefined();
    const ours = dispute();
    expect(await deliverAndFinish(ours, `${perOffice}.off_north`, NORTH_SECRET)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'dispute_opened' },
    });
  });

  it('ignores a refund event for a refund whose Stripe refund we never recorded (refund_unknown), or from another office', async () => {
    const { paymentId, intentId } = await paymentWithIntent(perOffice, { officeId: 'off_north', status: 'succeeded' });
    const refundId = `ref_${ulid()}`;
    await insertRefund(system.ctx.db.models, {
      _id: refundId,
      companyId: perOffice,
      officeId: 'off_north',
      paymentId,
      status: 'queued',
    });
    const refundEvent = (stripeRefundId: string) =>
      stripeEventEnvelope(`evt_${ulid()}`, 'refund.updated', {
        id: stripeRefundId,
        object: 'refund',
        amount: 500,
        currency: 'usd',
        payment_intent: intentId,
        status: 'succeeded',
        metadata: { refund_id: refundId, payment_id: paymentId },
      });
    const unknown = refundEvent(`re_${ulid()}`);
    expect(await deliverAndFinish(unknown, `${perOffice}.off_north`, NORTH_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'refund_unknown', resource: { type: 'refund', id: refundId } },
    });
    const refund = await system.ctx.db.models.Refund.findById(refundId).lean();
    expect(refund?.status).toBe('queued');
    expect(refund?.stripeRefundId).toBeUndefined();
    await ignoredAudit(perOffice, unknown.id, 'refund_unknown', refundId);

    // Once the Stripe refund id is recorded (as the refunds worker records Stripe's answer), only that office's
    // configuration moves it.
    const stripeRefundId = `re_${ulid()}`;
    await system.ctx.db.models.Refund.updateOne({ _id: refundId }, { $set: { status: 'pending', stripeRefundId } });
    const fromSouth = refundEvent(stripeRefundId);
    expect(await deliverAndFinish(fromSouth, `${perOffice}.off_south`, SOUTH_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'office_mismatch' },
    });
    expect((await system.ctx.db.models.Refund.findById(refundId).lean())?.status).toBe('pending');
  });
});
