import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import type { DisputeStatus } from '../../domain/dispute-transitions';
import { createCompany } from '../../models/companies';
import { savedPaymentMethodId } from '../../models/saved-payment-method.model';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment, shuffle } from '../support/records';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

let system: InProcessSystem;
let companyId: string;
let admin: string;

const WEBHOOK_SECRET = 'whsec_DisputeWebhookSecret0001';
const STRIPE_CUSTOMER = 'cus_DisputeTestCustomer01';
const PAYMENT_METHOD = 'pm_1SavedCardForRenewals';

type DisputeEventType = 'charge.dispute.created' | 'charge.dispute.updated' | 'charge.dispute.closed';

const envelope = (type: string, object: Record<string, unknown>, created?: number) =>
  stripeEventEnvelope(`evt_${ulid()}`, type, object, created);

function disputeEvent(
  type: DisputeEventType,
  dispute: { id: string; intentId: string; created?: number },
  status: DisputeStatus,
  eventCreated?: number,
) {
  return envelope(
    type,
    {
      id: dispute.id,
      object: 'dispute',
      amount: 1200,
      currency: 'usd',
      charge: `ch_${dispute.intentId.slice(3)}`,
      payment_intent: dispute.intentId,
      reason: 'product_not_received',
      status,
      created: dispute.created ?? Math.floor(Date.now() / 1000) - 3600,
      evidence: { customer_name: null, uncategorized_text: null },
      is_charge_refundable: false,
      livemode: false,
      metadata: {},
    },
    eventCreated,
  );
}

function setupIntentEvent(intentId = `seti_${ulid()}`, fields: Record<string, unknown> = {}) {
  return envelope('setup_intent.succeeded', {
    id: intentId,
    object: 'setup_intent',
    customer: STRIPE_CUSTOMER,
    payment_method: PAYMENT_METHOD,
    status: 'succeeded',
    usage: 'off_session',
    livemode: false,
    metadata: {},
    ...fields,
  });
}

/** A SetupIntent as POST …/payment-methods/setup-intents records it: events apply only to one of these. */
async function recordSetupIntent(customerRef: string, officeId?: string) {
  const intentId = `seti_${ulid()}`;
  await system.ctx.db.models.SetupIntent.create({
    _id: intentId,
    companyId,
    ...(officeId ? { officeId } : {}),
    customerRef,
    configurationId: companyId,
    livemode: false,
  });
  return intentId;
}

async function deliver(event: object, configId = companyId) {
  const response = await deliverSigned(system.url, configId, event, { secret: WEBHOOK_SECRET });
  return response.status;
}

/** A succeeded payment whose PaymentIntent Stripe knows, as the charges worker leaves it. */
async function succeededPayment(company = companyId, officeId?: string) {
  const intentId = `pi_${ulid()}`;
  const payment = await insertPayment(system.ctx.db.models, {
    companyId: company,
    ...(officeId ? { officeId } : {}),
    customer: STRIPE_CUSTOMER,
    status: 'succeeded',
    stripePaymentIntentId: intentId,
    completedAt: new Date(),
  });
  return { paymentId: payment._id, intentId };
}

async function finished(eventId: string) {
  const row = await waitFor(
    () => system.ctx.db.models.WebhookEvent.findById(eventId, { payload: 0 }).lean(),
    (row) => Boolean(row && row.status !== 'received'),
    { what: `stripe event ${eventId} to be processed` },
  );
  return row!;
}

async function deliverAndFinish(event: { id: string }) {
  expect(await deliver(event)).toBe(200);
  return finished(event.id);
}

async function viewPayment(paymentId: string) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}/payments/${paymentId}`, {
    headers: { authorization: `Bearer ${admin}` },
  });
  expect(response.status).toBe(200);
  return (await response.json()) as Record<string, any>;
}

const auditEvents = (filter: Record<string, unknown>) =>
  system.ctx.db.models.AuditEvent.find({ companyId, ...filter }).lean();

beforeAll(async () => {
  system = await startInProcessSystem('stripe_disputes');
  companyId = await createCompany(system.ctx.db, { name: 'Bayview Dental' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  // Attested: a saved card's details are read from Stripe with the company's key.
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51BayviewSecretKey01',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
});

afterAll(async () => {
  expect(system.ctx.logs.text).not.toContain(WEBHOOK_SECRET);
  await system.close();
});

describe('charge disputes', () => {
  it('records an opened dispute on the payment, shows it in the payment view and audits it', async () => {
    const { paymentId, intentId } = await succeededPayment(companyId, 'off_east');
    const dispute = { id: `dp_${ulid()}`, intentId };
    const created = disputeEvent('charge.dispute.created', dispute, 'needs_response');
    expect(await deliverAndFinish(created)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'dispute_opened', paymentId },
    });

    const view = await viewPayment(paymentId);
    expect(view.status).toBe('succeeded');
    expect(view.dispute).toEqual({
      id: dispute.id,
      status: 'needs_response',
      amount: 1200,
      currency: 'usd',
      reason: 'product_not_received',
      openedAt: expect.any(String),
    });

    const updated = disputeEvent('charge.dispute.updated', dispute, 'under_review');
    expect(await deliverAndFinish(updated)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'dispute_under_review' },
    });
    expect((await viewPayment(paymentId)).dispute.status).toBe('under_review');

    const audit = await waitFor(
      () => auditEvents({ 'resource.id': paymentId }),
      (events) =>
        events.filter((e) => e.action === 'webhook.applied').length === 2 &&
        events.some((e) => e.action === 'payment.disputed'),
      { what: 'dispute audit events' },
    );
    const disputed = audit.filter((e) => e.action === 'payment.disputed');
    expect(disputed).toHaveLength(1);
    expect(disputed[0]).toMatchObject({
      officeId: 'off_east',
      outcome: 'success',
      reason: 'product_not_received',
      actor: { type: 'system', id: 'stripe-events-worker' },
    });
    expect(audit.some((e) => e.action === 'payment.dispute_closed')).toBe(false);
  });

  it.each([
    ['won', 'won', 'success'],
    ['lost', 'lost', 'failure'],
  ] as const)(
    'closes a dispute as %s for good: later events for it are recorded and ignored',
    async (status, outcome, auditOutcome) => {
      const { paymentId, intentId } = await succeededPayment();
      const dispute = { id: `dp_${ulid()}`, intentId };
      await deliverAndFinish(disputeEvent('charge.dispute.created', dispute, 'needs_response'));
      const close = disputeEvent('charge.dispute.closed', dispute, status);
      expect(await deliverAndFinish(close)).toMatchObject({
        status: 'applied',
        outcome: { reason: `dispute_${status}` },
      });
      const view = await viewPayment(paymentId);
      expect(view.dispute).toMatchObject({ id: dispute.id, status, outcome, closedAt: expect.any(String) });

      const late = [
        [disputeEvent('charge.dispute.created', dispute, 'needs_response'), 'dispute_already_closed'],
        [disputeEvent('charge.dispute.updated', dispute, 'under_review'), 'dispute_already_closed'],
        [disputeEvent('charge.dispute.closed', dispute, status === 'won' ? 'lost' : 'won'), 'dispute_already_closed'],
      ] as const;
      for (const [event, reason] of late) {
        expect(await deliverAndFinish(event)).toMatchObject({ status: 'ignored', outcome: { reason, paymentId } });
      }
      expect((await viewPayment(paymentId)).dispute).toEqual(view.dispute);

      const audit = await waitFor(
        () => auditEvents({ 'resource.id': paymentId }),
        (events) =>
          events.filter((e) => e.action === 'webhook.ignored').length === late.length &&
          events.some((e) => e.action === 'payment.dispute_closed'),
        { what: 'webhook.ignored audit events' },
      );
      const closedEvents = audit.filter((e) => e.action === 'payment.dispute_closed');
      expect(closedEvents).toHaveLength(1);
      expect(closedEvents[0]).toMatchObject({ outcome: auditOutcome, reason: status });
      expect(audit.filter((e) => e.action === 'payment.disputed')).toHaveLength(1);
    },
  );

  it('ends shuffled created/updated/closed deliveries closed, with the outcome of the closing event', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const final of ['won', 'lost', 'won', 'lost'] as const) {
      const { paymentId, intentId } = await succeededPayment();
      const dispute = { id: `dp_${ulid()}`, intentId };
      const events = shuffle([
        disputeEvent('charge.dispute.created', dispute, 'needs_response', now - 40),
        disputeEvent('charge.dispute.updated', dispute, 'needs_response', now - 30),
        disputeEvent('charge.dispute.updated', dispute, 'under_review', now - 20),
        disputeEvent('charge.dispute.closed', dispute, final, now - 10),
      ]);
      for (const event of events) await deliverAndFinish(event);
      const view = await viewPayment(paymentId);
      expect(view.dispute).toMatchObject({ id: dispute.id, status: final, outcome: final });
      const rows = await system.ctx.db.models.WebhookEvent.find(
        { _id: { $in: events.map((e) => e.id) } },
        { payload: 0 },
      ).lean();
      const closeAt = events.findIndex((e) => e.type === 'charge.dispute.closed');
      for (const event of events.slice(closeAt + 1)) {
        expect(rows.find((r) => r._id === event.id)).toMatchObject({
          status: 'ignored',
          outcome: { reason: 'dispute_already_closed' },
        });
      }
      // Whatever the order: one webhook audit event per delivery, the dispute opened once and closed once.
      const audit = await waitFor(
        () => auditEvents({ 'resource.id': paymentId }),
        (found) =>
          found.filter((e) => /^webhook\.(applied|ignored)$/.test(e.action)).length === events.length &&
          found.some((e) => e.action === 'payment.dispute_closed'),
        { what: 'the audit events of every delivery' },
      );
      expect(
        audit
          .filter((e) => e.action.startsWith('payment.dispute'))
          .map((e) => e.action)
          .sort(),
      ).toEqual(['payment.dispute_closed', 'payment.disputed']);
    }
  });

  it('ends lost when created and closed are processed at once, on every payment (one write per revision)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const { paymentId, intentId } = await succeededPayment();
        const dispute = { id: `dp_${ulid()}`, intentId };
        return {
          paymentId,
          events: [
            disputeEvent('charge.dispute.created', dispute, 'needs_response', now - 20),
            disputeEvent('charge.dispute.closed', dispute, 'lost', now - 20),
          ],
        };
      }),
    );
    // Both deliveries of each dispute at once: the worker processes them concurrently.
    await Promise.all(
      cases.flatMap(({ events }) => events.map(async (event) => expect(await deliver(event)).toBe(200))),
    );
    await Promise.all(cases.flatMap(({ events }) => events.map((event) => finished(event.id))));
    for (const { paymentId } of cases) {
      const stored = await system.ctx.db.models.Payment.findById(paymentId).lean();
      expect({ paymentId, status: stored?.dispute?.status }).toEqual({ paymentId, status: 'lost' });
    }
  });

  it('makes a dispute write whose event stopped after claiming it, once', async () => {
    const { paymentId, intentId } = await succeededPayment();
    const dispute = { id: `dp_${ulid()}`, intentId, created: Math.floor(Date.now() / 1000) - 600 };
    const opened = disputeEvent('charge.dispute.created', dispute, 'needs_response');
    // What the stopped attempt left: the claim of revision 1 with what it would write, the payment untouched.
    await system.ctx.db.models.DisputeRevision.create({
      _id: `${paymentId}:1`,
      paymentId,
      revision: 1,
      dispute: {
        stripeDisputeId: dispute.id,
        status: 'needs_response',
        amount: 1200,
        currency: 'usd',
        reason: 'product_not_received',
        openedAt: new Date(dispute.created * 1000),
        openedBy: opened.id,
        changedBy: opened.id,
        revision: 1,
      },
      claimedAt: new Date(),
    });
    // The next event makes the claimed write first, then its own.
    const closed = disputeEvent('charge.dispute.closed', dispute, 'lost');
    expect(await deliverAndFinish(closed)).toMatchObject({ status: 'applied' });
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.dispute).toMatchObject({
      status: 'lost',
      openedBy: opened.id,
      changedBy: closed.id,
      revision: 2,
    });
    // The stopped event, redelivered by Stripe, recognises its write and finishes: the opening is audited once.
    expect(await deliverAndFinish(opened)).toMatchObject({ status: 'applied', outcome: { reason: 'dispute_opened' } });
    const audit = await waitFor(
      () => auditEvents({ 'resource.id': paymentId, action: { $in: ['payment.disputed', 'payment.dispute_closed'] } }),
      (found) => found.length === 2,
      { what: 'the dispute opened and closed in the audit trail' },
    );
    expect(audit.map((e) => e.action).sort()).toEqual(['payment.dispute_closed', 'payment.disputed']);
  });

  it("ignores a dispute naming another company's PaymentIntent and leaves that payment alone", async () => {
    const other = await createCompany(system.ctx.db, { name: 'Elsewhere Clinic' });
    const foreign = await succeededPayment(other);
    const event = disputeEvent('charge.dispute.created', { id: `dp_${ulid()}`, intentId: foreign.intentId }, 'lost');
    expect(await deliverAndFinish(event)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'payment_not_found' },
    });
    const stored = await system.ctx.db.models.Payment.findById(foreign.paymentId).lean();
    expect(stored?.dispute).toBeUndefined();
    await waitFor(
      () => auditEvents({ action: 'webhook.ignored', 'resource.id': event.id }),
      (events) => events.length === 1 && events[0]!.reason === 'payment_not_found',
      { what: 'webhook.ignored audit event in the receiving company' },
    );
    expect(await system.ctx.db.models.AuditEvent.countDocuments({ 'resource.id': foreign.paymentId })).toBe(0);
  });

  it('finishes an event whose earlier attempt wrote the dispute but stopped before auditing it', async () => {
    const { paymentId, intentId } = await succeededPayment();
    const dispute = { id: `dp_${ulid()}`, intentId, created: Math.floor(Date.now() / 1000) - 600 };
    const event = disputeEvent('charge.dispute.created', dispute, 'warning_needs_response');
    // What the crashed attempt left behind: the dispute written under this event's audit key, nothing audited.
    await system.ctx.db.models.Payment.updateOne(
      { _id: paymentId },
      {
        $set: {
          dispute: {
            stripeDisputeId: dispute.id,
            status: 'warning_needs_response',
            amount: 1200,
            currency: 'usd',
            reason: 'product_not_received',
            openedAt: new Date(dispute.created * 1000),
            openedBy: event.id,
            changedBy: event.id,
          },
        },
      },
    );
    expect(await deliverAndFinish(event)).toMatchObject({ status: 'applied', outcome: { reason: 'dispute_opened' } });
    await waitFor(
      () => auditEvents({ 'resource.id': paymentId }),
      (events) =>
        events.some((e) => e.action === 'payment.disputed') && events.some((e) => e.action === 'webhook.applied'),
      { what: 'the audit events the crashed attempt never enqueued' },
    );
  });
});

describe('saved payment methods from setup_intent.succeeded', () => {
  const savedMethods = () => system.ctx.rawMongo.db().collection('saved_payment_methods');

  it('stores one saved method with the Stripe ids encrypted, however often the event is delivered', async () => {
    const customerRef = `acct-${ulid()}`;
    const intentId = await recordSetupIntent(customerRef, 'off_north');
    // The office and payer come from our record, never from metadata.
    const event = setupIntentEvent(intentId, { metadata: { customer_ref: 'acct-other', office_id: 'off_south' } });
    const statuses = await Promise.all([deliver(event), deliver(event), deliver(event)]);
    expect(statuses).toEqual([200, 200, 200]);
    const row = await finished(event.id);
    const id = savedPaymentMethodId(companyId, intentId);
    expect(row).toMatchObject({
      status: 'applied',
      outcome: { reason: 'payment_method_saved', resource: { type: 'saved_payment_method', id } },
    });

    // Found the way a subscription will look for it: by company and customer ref.
    const found = await system.ctx.db.models.SavedPaymentMethod.find({ companyId, customerRef }).lean();
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      _id: id,
      officeId: 'off_north',
      stripeCustomerId: STRIPE_CUSTOMER,
      stripePaymentMethodId: PAYMENT_METHOD,
      card: expect.objectContaining({ brand: 'visa', last4: '4242' }),
      usage: 'off_session',
      status: 'active',
    });

    const raw = await savedMethods().findOne({ _id: id as never });
    for (const field of ['stripeCustomerId', 'stripePaymentMethodId']) {
      expect(raw?.[field]).toBeInstanceOf(Binary);
      expect((raw?.[field] as Binary).sub_type).toBe(6);
    }
    expect(JSON.stringify(raw)).not.toContain(STRIPE_CUSTOMER);
    expect(JSON.stringify(raw)).not.toContain(PAYMENT_METHOD);

    const audit = await waitFor(
      () => auditEvents({ 'resource.id': id }),
      (events) => events.some((e) => e.action === 'webhook.applied'),
      { what: 'payment_method.saved audit event' },
    );
    expect(audit.filter((e) => e.action === 'payment_method.saved')).toEqual([
      expect.objectContaining({ officeId: 'off_north', outcome: 'success', reason: 'off_session' }),
    ]);
    expect(JSON.stringify(audit)).not.toContain(STRIPE_CUSTOMER);
  });

  it('a second event for the same SetupIntent adds nothing', async () => {
    const customerRef = `acct-${ulid()}`;
    const first = setupIntentEvent(await recordSetupIntent(customerRef));
    await deliverAndFinish(first);
    const again = { ...first, id: `evt_${ulid()}` };
    expect(await deliverAndFinish(again)).toMatchObject({ status: 'ignored', outcome: { reason: 'already_saved' } });
    expect(await savedMethods().countDocuments({ companyId, customerRef })).toBe(1);
  });

  it.each([
    ['we never created', false, {}, 'setup_intent_unknown'],
    ['no Customer', true, { customer: null }, 'stripe_customer_missing'],
    ['no PaymentMethod', true, { payment_method: null }, 'payment_method_missing'],
    ['a status other than succeeded', true, { status: 'requires_payment_method' }, 'setup_intent_not_succeeded'],
  ])('records and ignores a SetupIntent %s, storing nothing', async (_label, recorded, fields, reason) => {
    const before = await savedMethods().countDocuments({ companyId });
    const intentId = recorded ? await recordSetupIntent(`acct-${ulid()}`) : `seti_${ulid()}`;
    const event = setupIntentEvent(intentId, fields);
    expect(await deliverAndFinish(event)).toMatchObject({ status: 'ignored', outcome: { reason } });
    expect(await savedMethods().countDocuments({ companyId })).toBe(before);
    await waitFor(
      () => auditEvents({ action: 'webhook.ignored', 'resource.id': event.id }),
      (events) => events.length === 1 && events[0]!.reason === reason,
      { what: 'webhook.ignored audit event' },
    );
  });

  it('finishes an event whose earlier attempt stored the method but stopped before auditing it', async () => {
    const customerRef = `acct-${ulid()}`;
    const intentId = await recordSetupIntent(customerRef);
    const event = setupIntentEvent(intentId);
    const id = savedPaymentMethodId(companyId, intentId);
    await system.ctx.db.models.SavedPaymentMethod.create({
      _id: id,
      companyId,
      customerRef,
      stripeCustomerId: await system.ctx.db.encryption.encrypt(companyId, STRIPE_CUSTOMER),
      stripePaymentMethodId: await system.ctx.db.encryption.encrypt(companyId, PAYMENT_METHOD),
      usage: 'off_session',
      status: 'active',
      savedBy: event.id,
    });
    expect(await deliverAndFinish(event)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'payment_method_saved' },
    });
    await waitFor(
      () => auditEvents({ 'resource.id': id, action: 'payment_method.saved' }),
      (events) => events.length === 1,
      { what: 'the payment_method.saved event the crashed attempt never enqueued' },
    );
  });
});
