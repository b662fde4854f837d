import { Binary } from 'mongodb';
import Stripe from 'stripe';
import { ulid } from 'ulid';
import type { PaymentStatus } from '../../domain/payment-status';
import { createCompany, shredCompany } from '../../models/companies';
import { waitFor } from '../support/harness';
import { REJECTIONS_AUDITED_PER_MINUTE } from '../../api/routes/stripe-webhooks';
import { closeQueues, createQueues } from '../../queues';
import { enqueueStripeEvent } from '../../queues/stripe-events.queue';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment, shuffle } from '../support/records';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

let system: InProcessSystem;
let companyId: string;
let admin: string;

const stripe = new Stripe('sk_test_unused');
const WEBHOOK_SECRETS = ['whsec_WebhookSecretOld0001', 'whsec_WebhookSecretNew0002'];
const ROTATED_SECRETS = ['whsec_RotatingSecretOld0001', 'whsec_RotatingSecretNew0002'] as const;
const CUSTOMER = 'cus_WebhookPatientRef01';

type EventType =
  | 'payment_intent.processing'
  | 'payment_intent.requires_action'
  | 'payment_intent.succeeded'
  | 'payment_intent.payment_failed'
  | 'payment_intent.canceled'
  | 'customer.created';

const INTENT_STATUS: Record<string, string> = {
  'payment_intent.processing': 'processing',
  'payment_intent.requires_action': 'requires_action',
  'payment_intent.succeeded': 'succeeded',
  'payment_intent.payment_failed': 'requires_payment_method',
  'payment_intent.canceled': 'canceled',
};

function stripeEvent(type: EventType, paymentId: string, created = Math.floor(Date.now() / 1000)) {
  const intent: Record<string, unknown> = {
    id: `pi_${paymentId.slice(4)}`,
    object: 'payment_intent',
    amount: 1200,
    currency: 'usd',
    customer: CUSTOMER,
    status: INTENT_STATUS[type] ?? 'succeeded',
    metadata: { payment_id: paymentId, company_id: companyId },
    client_secret: `pi_${paymentId.slice(4)}_secret_abc`,
    next_action: type === 'payment_intent.requires_action' ? { type: 'use_stripe_sdk' } : null,
    last_payment_error:
      type === 'payment_intent.payment_failed'
        ? { code: 'card_declined', decline_code: 'insufficient_funds', message: 'Your card has insufficient funds.' }
        : null,
  };
  return stripeEventEnvelope(
    `evt_${ulid()}`,
    type,
    type === 'customer.created' ? { id: 'cus_1', object: 'customer' } : intent,
    created,
  );
}

async function deliver(
  event: object | string,
  options: { secret?: string; timestamp?: number; configId?: string; header?: string | null; url?: string } = {},
) {
  const response = await deliverSigned(options.url ?? system.url, options.configId ?? companyId, event, {
    secret: options.secret ?? WEBHOOK_SECRETS[0]!,
    ...(options.timestamp ? { timestamp: options.timestamp } : {}),
    ...(options.header === undefined ? {} : { header: options.header }),
  });
  return { status: response.status, body: (await response.json()) as any };
}

/** A payment whose PaymentIntent the charges worker created (its id recorded): the one `stripeEvent` names. */
async function newPayment(status: PaymentStatus, company = companyId) {
  const paymentId = `pay_${ulid()}`;
  await insertPayment(system.ctx.db.models, {
    _id: paymentId,
    companyId: company,
    status,
    customer: CUSTOMER,
    stripePaymentIntentId: `pi_${paymentId.slice(4)}`,
  });
  return paymentId;
}

const inbox = () => system.ctx.db.models.WebhookEvent;

async function finished(eventId: string) {
  const row = await waitFor(
    () => inbox().findById(eventId).lean(),
    (row) => Boolean(row && row.status !== 'received'),
    { what: `stripe event ${eventId} to be processed` },
  );
  return row!;
}

function logCount(message: string, eventId: string): number {
  return system.ctx.logs.lines
    .map((line) => JSON.parse(line) as { msg?: string; eventId?: string })
    .filter((line) => line.msg === message && line.eventId === eventId).length;
}

/** Resolves once every queued audit event has been written. */
async function auditQueueDrained(): Promise<void> {
  const queues = createQueues(system.ctx.redis, system.ctx.config.queuePrefix);
  try {
    await waitFor(
      () => queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized'),
      (counts) => Object.values(counts).every((count) => count === 0),
      { what: 'the audit queue to drain' },
    );
  } finally {
    await closeQueues(queues);
  }
}

async function inPool<T>(items: T[], concurrency: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) await run(items[next++]!);
    }),
  );
}

beforeAll(async () => {
  // The scheduled outbox sweep never counts this file's hand-made payments as stale (on a slow run it re-charged the
  // 1,000-delivery test's `processing` payments against stripe-mock mid-test); the sweep tests call sweepNow().
  system = await startInProcessSystem('stripe_webhooks', { OUTBOX_STALE_AFTER_MS: String(60 * 60_000) });
  companyId = await createCompany(system.ctx.db, { name: 'Harbor Clinic' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51HarborSecretKey0001',
    webhookSigningSecrets: WEBHOOK_SECRETS,
  });
});

afterAll(async () => {
  for (const secret of [...WEBHOOK_SECRETS, ...ROTATED_SECRETS]) expect(system.ctx.logs.text).not.toContain(secret);
  await system.close();
});

describe('receiving Stripe webhooks', () => {
  it('verifies, stores the event encrypted, applies it to the payment and audits it (no bearer token needed)', async () => {
    const paymentId = await newPayment('processing');
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    const response = await deliver(event);
    expect(response).toEqual({ status: 200, body: { received: true } });

    const raw = await system.ctx.rawMongo
      .db()
      .collection('webhook_events')
      .findOne({ _id: event.id as never });
    expect(raw?.payload).toBeInstanceOf(Binary);
    expect((raw?.payload as Binary).sub_type).toBe(6);
    expect(JSON.stringify(raw)).not.toContain(CUSTOMER);
    expect(raw).toMatchObject({ companyId, type: 'payment_intent.succeeded', livemode: false });

    const row = await finished(event.id);
    expect(row).toMatchObject({ status: 'applied', outcome: { reason: 'processing_to_succeeded', paymentId } });
    expect(JSON.parse(String(row?.payload)).id).toBe(event.id);
    const payment = await system.ctx.db.models.Payment.findById(paymentId).lean();
    expect(payment?.status).toBe('succeeded');
    expect(payment?.completedAt).toBeInstanceOf(Date);

    const audit = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, action: /^webhook\./ }).lean(),
      (events) => events.some((e) => e.action === 'webhook.applied' && e.resource.id === paymentId),
      { what: 'webhook audit events' },
    );
    expect(audit.find((e) => e.action === 'webhook.received' && e.resource.id === event.id)).toMatchObject({
      actor: { type: 'service', id: 'stripe' },
      route: 'POST /v1/webhooks/stripe/:configId',
    });
    expect(audit.find((e) => e.action === 'webhook.applied')).toMatchObject({
      resource: { type: 'payment', id: paymentId },
      reason: 'processing_to_succeeded',
    });
    expect(JSON.stringify(audit)).not.toContain(CUSTOMER);
  });

  it('accepts the second (rotation) secret too, and records requires_action with its client secret encrypted', async () => {
    const paymentId = await newPayment('processing');
    const event = stripeEvent('payment_intent.requires_action', paymentId);
    expect((await deliver(event, { secret: WEBHOOK_SECRETS[1] })).status).toBe(200);
    expect((await finished(event.id)).status).toBe('applied');
    const payment = await system.ctx.db.models.Payment.findById(paymentId).lean();
    expect(payment).toMatchObject({ status: 'requires_action', action: { nextActionType: 'use_stripe_sdk' } });
    const raw = await system.ctx.rawMongo
      .db()
      .collection('payments')
      .findOne({ _id: paymentId as never });
    expect((raw?.action.clientSecret as Binary).sub_type).toBe(6);
  });

  it.each([
    ['a tampered payload', 'signature_invalid', { tamper: true }],
    [
      'a stale timestamp (10 minutes old)',
      'timestamp_outside_tolerance',
      { timestamp: Math.floor(Date.now() / 1000) - 600 },
    ],
    ['a secret that is not configured', 'signature_invalid', { secret: 'whsec_SomebodyElsesSecret99' }],
    ['no signature header', 'signature_missing', { header: null }],
    ['a garbled signature header', 'signature_malformed', { header: 'garbage' }],
  ])('refuses %s with 400 %s, stores nothing, and audits the rejection', async (_label, code, options) => {
    const paymentId = await newPayment('processing');
    const rejectedBefore = await system.ctx.db.models.AuditEvent.countDocuments({
      companyId,
      action: 'webhook.rejected',
      reason: code,
    });
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    const { tamper, ...deliveryOptions } = options as { tamper?: boolean; secret?: string; timestamp?: number };
    let response;
    if (tamper) {
      const header = stripe.webhooks.generateTestHeaderString({
        payload: JSON.stringify(event),
        secret: WEBHOOK_SECRETS[0]!,
      });
      response = await deliver({ ...event, data: { object: { ...event.data.object, amount: 1 } } }, { header });
    } else {
      response = await deliver(event, deliveryOptions);
    }
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe(code);
    expect(await inbox().countDocuments({ _id: event.id })).toBe(0);
    const rejected = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, action: 'webhook.rejected', reason: code }).lean(),
      (events) => events.length === rejectedBefore + 1,
      { what: 'webhook.rejected audit event' },
    );
    expect(rejected[0]).toMatchObject({ outcome: 'denied', resource: { type: 'payment_config', id: companyId } });
    expect(JSON.stringify(rejected)).not.toContain(event.id);
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('processing');
  });

  it('refuses an unknown configuration with 400, in the platform trail', async () => {
    const event = stripeEvent('payment_intent.succeeded', `pay_${ulid()}`);
    const unknown = `co_${ulid()}`;
    for (const configId of [unknown, `${companyId}.off_x.y`, `${unknown}.off_main`]) {
      const response = await deliver(event, { configId });
      expect(response.status).toBe(400);
      expect(response.body.error.code).toBe('config_unknown');
    }
    expect(await inbox().countDocuments({ _id: event.id })).toBe(0);
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId: 'platform',
          action: 'webhook.rejected',
          'resource.id': unknown,
        }).lean(),
      (events) => events.length === 1,
      { what: 'platform webhook.rejected event' },
    );
  });

  it('answers every forged delivery of a flood 400, but audits only a bounded number per source each minute', async () => {
    const deliveries = 3 * REJECTIONS_AUDITED_PER_MINUTE;
    const platformRejections = () =>
      system.ctx.db.models.AuditEvent.countDocuments({
        companyId: 'platform',
        action: 'webhook.rejected',
        reason: 'config_unknown',
      });
    const OVER_BOUND = 'over the audit bound: not audited';
    // Earlier tests' rejections may still be queued: counted now, not in the flood's share.
    await auditQueueDrained();
    const before = await platformRejections();
    const loggedBefore = system.ctx.logs.lines.filter((line) => line.includes(OVER_BOUND)).length;
    const statuses: number[] = [];
    // A forger varies the endpoint id too; the bound is per source, not per made-up config id.
    await inPool(
      Array.from({ length: deliveries }, () => `co_${ulid()}`),
      10,
      async (configId) => {
        statuses.push((await deliver(stripeEvent('payment_intent.succeeded', `pay_${ulid()}`), { configId })).status);
      },
    );
    expect(statuses).toEqual(Array.from({ length: deliveries }, () => 400));
    await auditQueueDrained();
    const audited = (await platformRejections()) - before;
    const logged = system.ctx.logs.lines.filter((line) => line.includes(OVER_BOUND)).length - loggedBefore;
    // Earlier tests' rejections share the window, and the flood may straddle a minute boundary (two windows).
    expect(audited).toBeLessThanOrEqual(2 * REJECTIONS_AUDITED_PER_MINUTE);
    // Every rejection is either in the audit trail or in the log, never neither.
    expect(audited + logged).toBe(deliveries);
  });

  it('refuses deliveries for a crypto-shredded company, without giving it a new data key', async () => {
    const shredded = await createCompany(system.ctx.db, {
      name: 'Closed Clinic',
      stripeSecretKey: 'sk_test_51ClosedKey0001',
    });
    await shredCompany(system.ctx.db, shredded);
    const event = stripeEvent('payment_intent.succeeded', `pay_${ulid()}`);
    const response = await deliver(event, { configId: shredded });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('company_shredded');
    expect(await inbox().countDocuments({ _id: event.id })).toBe(0);
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId: 'platform',
          action: 'webhook.rejected',
          'resource.id': shredded,
        }).lean(),
      (events) => events.length === 1 && events[0]!.reason === 'company_shredded',
      { what: 'platform webhook.rejected event for the shredded company' },
    );
    const keyVault = system.ctx.config.keyVaultNamespace.split('.');
    const keys = await system.ctx.rawMongo
      .db(keyVault[0])
      .collection(keyVault[1]!)
      .countDocuments({ keyAltNames: `company-${shredded}` });
    expect(keys).toBe(0);
  });

  it('checks each delivery against the configuration as it is now: a rotation and a shredding apply to the next one', async () => {
    const clinic = await createCompany(system.ctx.db, { name: 'Rotating Clinic' });
    const clinicAdmin = await system.token(clinic, ['company_admin'], { subject: 'usr-rotating-admin' });
    await configureStripeWebhooks(system, clinic, clinicAdmin, {
      secretKey: 'sk_test_51RotatingSecretKey0001',
      webhookSigningSecrets: [ROTATED_SECRETS[0]],
    });
    const send = (secret: string) =>
      deliver(stripeEvent('customer.created', `pay_${ulid()}`), { configId: clinic, secret });
    // The api keeps the configuration it read (while Redis' token for it is unchanged): these are served from memory.
    for (let i = 0; i < 3; i += 1) expect((await send(ROTATED_SECRETS[0])).status).toBe(200);

    const rotated = await fetch(`${system.url}/v1/companies/${clinic}/payment-config`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${clinicAdmin}`, 'content-type': 'application/json' },
      body: JSON.stringify({ mode: 'company', credentials: { webhookSigningSecrets: [ROTATED_SECRETS[1]] } }),
    });
    expect(rotated.status).toBe(200);
    const refused = await send(ROTATED_SECRETS[0]);
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('signature_invalid');
    expect((await send(ROTATED_SECRETS[1])).status).toBe(200);

    await shredCompany(system.ctx.db, clinic);
    const shredded = await send(ROTATED_SECRETS[1]);
    expect(shredded.status).toBe(400);
    expect(shredded.body.error.code).toBe('company_shredded');
  });

  it('stores and applies an event delivered 5 times concurrently exactly once', async () => {
    const paymentId = await newPayment('requires_action');
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    const responses = await Promise.all(Array.from({ length: 5 }, () => deliver(event)));
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(await inbox().countDocuments({ _id: event.id })).toBe(1);
    expect((await finished(event.id)).status).toBe('applied');
    // A redelivery after it finished is only acknowledged.
    expect((await deliver(event)).status).toBe(200);
    await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': paymentId }).lean(),
      (events) => events.some((e) => e.action === 'payment.succeeded'),
      { what: 'payment audit events' },
    );
    const applied = await system.ctx.db.models.AuditEvent.find({
      companyId,
      action: 'webhook.applied',
      'resource.id': paymentId,
    }).lean();
    expect(applied).toHaveLength(1);
    expect(logCount('stripe event applied', event.id)).toBe(1);
  });

  it('ends a shuffled, out-of-order sequence in succeeded, whatever the order', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (let run = 0; run < 4; run += 1) {
      const paymentId = await newPayment('processing');
      const events = shuffle([
        stripeEvent('payment_intent.processing', paymentId, now - 30),
        stripeEvent('payment_intent.requires_action', paymentId, now - 20),
        stripeEvent('payment_intent.payment_failed', paymentId, now - 40),
        stripeEvent('payment_intent.succeeded', paymentId, now - 10),
        stripeEvent('payment_intent.processing', paymentId, now - 5),
      ]);
      for (const event of events) {
        expect((await deliver(event)).status).toBe(200);
        await finished(event.id);
      }
      const payment = await system.ctx.db.models.Payment.findById(paymentId).lean();
      expect(payment?.status).toBe('succeeded');
      expect(payment?.failure).toBeUndefined();
      const rows = await inbox()
        .find({ _id: { $in: events.map((e) => e.id) } })
        .lean();
      const last = events.findIndex((e) => e.type === 'payment_intent.succeeded');
      // Everything delivered after the success was left alone.
      for (const event of events.slice(last + 1)) {
        expect(rows.find((r) => r._id === event.id)?.outcome?.reason).toBe(
          event.type === 'payment_intent.succeeded' ? 'already_in_state' : 'stale_transition',
        );
      }
    }
  });

  it('lets a failed payment still succeed, but not go back to requires_action', async () => {
    const paymentId = await newPayment('processing');
    const failed = stripeEvent('payment_intent.payment_failed', paymentId);
    await deliver(failed);
    await finished(failed.id);
    expect(await system.ctx.db.models.Payment.findById(paymentId).lean()).toMatchObject({
      status: 'failed',
      failure: { code: 'card_declined', declineCode: 'insufficient_funds' },
    });
    const late = stripeEvent('payment_intent.requires_action', paymentId);
    await deliver(late);
    expect(await finished(late.id)).toMatchObject({ status: 'ignored', outcome: { reason: 'stale_transition' } });
    const succeeded = stripeEvent('payment_intent.succeeded', paymentId);
    await deliver(succeeded);
    expect((await finished(succeeded.id)).status).toBe('applied');
    const payment = await system.ctx.db.models.Payment.findById(paymentId).lean();
    expect(payment?.status).toBe('succeeded');
    expect(payment?.failure).toBeUndefined();
  });

  it('finishes an event whose earlier attempt moved the payment but crashed before auditing it', async () => {
    // The state a crash leaves: the transition written (and announced in `pending`), the row not yet finished.
    const paymentId = await newPayment('succeeded');
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    await inbox().create({
      _id: event.id,
      companyId,
      type: event.type,
      livemode: false,
      created: new Date(event.created * 1000),
      receivedAt: new Date(),
      status: 'received',
      pending: { paymentId, from: 'processing', to: 'succeeded' },
      payload: await system.ctx.db.encryption.encrypt(companyId, JSON.stringify(event)),
    });
    const queues = createQueues(system.ctx.redis, system.ctx.config.queuePrefix);
    try {
      await enqueueStripeEvent(queues['stripe-events'], { eventId: event.id });
    } finally {
      await closeQueues(queues);
    }
    expect(await finished(event.id)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'processing_to_succeeded' },
    });
    const succeeded = await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'payment.succeeded',
          'resource.id': paymentId,
        }).lean(),
      (events) => events.length === 1,
      { what: 'the payment.succeeded audit event the crash lost' },
    );
    expect(succeeded[0]).toMatchObject({ outcome: 'success' });
  });

  it('acknowledges and ignores unhandled types, unknown payments and other companies’ payments', async () => {
    const otherCompany = await createCompany(system.ctx.db, { name: 'Other Clinic' });
    const foreign = await newPayment('processing', otherCompany);
    const cases = [
      [stripeEvent('customer.created', `pay_${ulid()}`), 'unhandled_type'],
      [stripeEvent('payment_intent.succeeded', `pay_${ulid()}`), 'payment_not_found'],
      [stripeEvent('payment_intent.succeeded', foreign), 'company_mismatch'],
    ] as const;
    for (const [event, reason] of cases) {
      expect((await deliver(event)).status).toBe(200);
      expect(await finished(event.id)).toMatchObject({ status: 'ignored', outcome: { reason } });
    }
    expect((await system.ctx.db.models.Payment.findById(foreign).lean())?.status).toBe('processing');
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'webhook.ignored',
          reason: 'company_mismatch',
        }).lean(),
      (events) => events.length === 1 && events[0]!.resource.type === 'webhook_event',
      { what: 'webhook.ignored audit event' },
    );
  });

  it('answers 503 when the event cannot be queued (Redis down), keeps it, and queues it on the next delivery', async () => {
    const paymentId = await newPayment('processing');
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    await system.withRedisDownApi(async (url) => {
      const response = await deliver(event, { url });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('queue_unavailable');
    });
    expect(await inbox().findById(event.id).lean()).toMatchObject({ status: 'received' });
    // Stripe retries the delivery: the stored event is queued and applied then.
    expect((await deliver(event)).status).toBe(200);
    expect((await finished(event.id)).status).toBe('applied');
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('succeeded');
  });

  it('a stored event whose enqueue failed is picked up by the outbox sweep even if Stripe never redelivers', async () => {
    // Waiting on the payer, not on a worker: the sweep re-enqueues stale queued/processing payments, and a charge
    // job finishing this payment first would make the event a no-op.
    const paymentId = await newPayment('requires_action');
    const event = stripeEvent('payment_intent.succeeded', paymentId);
    await system.withRedisDownApi(async (url) => {
      expect((await deliver(event, { url })).status).toBe(503);
    });
    const sweep = await system.sweepNow();
    expect(sweep.requeued).toBeGreaterThanOrEqual(1);
    expect((await finished(event.id)).status).toBe('applied');
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('succeeded');
  });

  it('1,000 deliveries of 200 events (each 5 times, shuffled, 50 at a time): 200 rows, each applied once', async () => {
    const paymentIds = await Promise.all(Array.from({ length: 200 }, () => newPayment('processing')));
    const events = paymentIds.map((id) => stripeEvent('payment_intent.succeeded', id));
    const deliveries = shuffle(events.flatMap((event) => [event, event, event, event, event]));
    const statuses: number[] = [];
    await inPool(deliveries, 50, async (event) => {
      statuses.push((await deliver(event)).status);
    });
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const ids = events.map((e) => e.id);
    expect(await inbox().countDocuments({ _id: { $in: ids } })).toBe(200);
    await waitFor(
      () => inbox().countDocuments({ _id: { $in: ids }, status: 'applied' }),
      (count) => count === 200,
      { what: 'all 200 events applied', timeoutMs: 120_000, intervalMs: 200 },
    );
    const payments = await system.ctx.db.models.Payment.find({ _id: { $in: paymentIds } }, { status: 1 }).lean();
    expect(payments.every((p) => p.status === 'succeeded')).toBe(true);
    for (const id of ids) expect(logCount('stripe event applied', id)).toBe(1);
  }, 180_000);
});
