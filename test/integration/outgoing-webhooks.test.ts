import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { registry } from '../../platform/metrics';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { webhookDeliveryJobId } from '../../queues/webhook-deliveries.queue';
import { insertOutgoingDeliveries, insertSavedCard } from '../support/records';
import { configureStripeWebhooks } from '../support/stripe-events';

type Json = Record<string, any>;

/** A receiver as an upstream app would run it: answers `failFirst` requests with 500, then 200. */
interface Received {
  id: string;
  body: string;
  headers: IncomingHttpHeaders;
  answered: number;
}

let system: InProcessSystem;
let receiver: Server;
let receiverUrl: string;
let received: Received[] = [];
let failNext = 0;
let companyId: string;
let admin: string;

const CUSTOMER = 'cus_WebhookPatientRef1';
// What a payer profile may hold: none of it may ever reach a webhook body.
const PHI = {
  name: 'Margaret Oncology-Hypertension Whitfield',
  billingAddress: ['42 Chemotherapy Lane, Suite Diagnosis F32.9'],
  email: 'margaret.whitfield.hiv-positive@example.com',
};

async function api(method: string, path: string, options: { token?: string; body?: unknown; key?: string } = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? admin}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.key) headers['idempotency-key'] = options.key;
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as Json };
}

async function charge(amount: number) {
  const created = await api('POST', '/payments', {
    key: `wh-key-${ulid()}`,
    body: { amount, currency: 'usd', customer: CUSTOMER, paymentMethod: 'pm_card_visa' },
  });
  expect(created.status).toBe(202);
  const paymentId = created.body.id as string;
  await waitFor(
    () => api('GET', `/payments/${paymentId}`),
    (r) => r.body.status === 'succeeded',
    { what: `payment ${paymentId} to succeed` },
  );
  return paymentId;
}

const delivered = (type: string, resourceId: string) =>
  received.filter((r) => r.answered === 200 && JSON.parse(r.body).type === type && r.body.includes(resourceId));

async function createEndpoint(body: Json) {
  const created = await api('POST', '/webhook-endpoints', { body });
  expect(created.status).toBe(201);
  return created.body as { id: string; secret: string };
}

beforeAll(async () => {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const answered = failNext > 0 ? 500 : 200;
      if (failNext > 0) failNext -= 1;
      received.push({
        id: String(request.headers['webhook-id']),
        body: Buffer.concat(chunks).toString('utf8'),
        headers: request.headers,
        answered,
      });
      response.writeHead(answered, { 'content-type': 'text/plain' }).end(answered === 200 ? 'ok' : 'try later');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  system = await startInProcessSystem('outgoing_webhooks', {
    // Short retries, and an endpoint failing for 5 s (instead of 3 days) is disabled.
    WEBHOOK_RETRY_SCHEDULE_MS: '100,200,300,400,500,600,700,800,900,1000,1000,1000,1000,1000',
    WEBHOOK_DISABLE_AFTER_MS: '5000',
    WEBHOOK_ENDPOINT_CACHE_MS: '0',
  });
  companyId = await createCompany(system.ctx.db, { name: 'Harbor Oncology' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-webhook-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51HarborSecretKey0001',
    webhookSigningSecrets: ['whsec_HarborStripeSecret0001'],
  });
  expect((await api('PUT', `/payers/${CUSTOMER}`, { body: PHI })).status).toBe(200);
});

afterAll(async () => {
  await system.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

beforeEach(() => {
  received = [];
  failNext = 0;
});

describe('outgoing webhooks', () => {
  it('delivers every event, signed, once per webhook-id, through a receiver that fails for a while; no payer data', async () => {
    const endpoint = await createEndpoint({ url: receiverUrl, enabledEvents: ['*'] });
    expect(endpoint.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    failNext = 3;
    const paymentId = await charge(4_200);
    const refund = await api('POST', `/payments/${paymentId}/refunds`, {
      key: `wh-refund-${ulid()}`,
      body: { amount: 1_200, reason: 'requested_by_customer' },
    });
    expect(refund.status).toBe(202);
    const refundId = refund.body.id as string;

    // Both events arrived, and every request the receiver failed was retried until it took it: a retry still waiting
    // its backoff would otherwise arrive during the next test.
    const retriedUntilTaken = () =>
      received
        .filter((r) => r.answered === 500)
        .every((failed) => received.some((r) => r.id === failed.id && r.answered === 200));
    await waitFor(
      async () => received,
      () =>
        delivered('payment.succeeded', paymentId).length > 0 &&
        delivered('refund.succeeded', refundId).length > 0 &&
        retriedUntilTaken(),
      { what: 'payment.succeeded and refund.succeeded to arrive, and every failed request retried', timeoutMs: 30_000 },
    );
    // The receiver failed the first three requests: they were retried under the same webhook-id.
    expect(received.filter((r) => r.answered === 500)).toHaveLength(3);
    const webhook = new Webhook(endpoint.secret);
    for (const delivery of received) {
      const verified = webhook.verify(delivery.body, delivery.headers as Record<string, string>) as Json;
      expect(Object.keys(verified).sort()).toEqual(['data', 'timestamp', 'type']);
      for (const value of [PHI.name, 'Chemotherapy', 'F32.9', PHI.email, CUSTOMER]) {
        expect(delivery.body).not.toContain(value);
      }
    }
    const failedIds = new Set(received.filter((r) => r.answered === 500).map((r) => r.id));
    const succeeded = received.filter((r) => r.answered === 200).map((r) => r.id);
    for (const id of failedIds) expect(succeeded).toContain(id);
    expect(new Set(succeeded).size).toBe(succeeded.length);

    const payload = JSON.parse(delivered('payment.succeeded', paymentId)[0]!.body) as Json;
    expect(payload.data).toMatchObject({ object: 'payment', id: paymentId, status: 'succeeded', amount: 4_200 });

    // The deliveries API shows the failed attempts and the success; the events API has the same ids.
    const deliveries = await api('GET', `/webhook-endpoints/${endpoint.id}/deliveries?limit=100`);
    expect(deliveries.status).toBe(200);
    const paid = (deliveries.body.items as Json[]).find((d) => d.eventType === 'payment.succeeded')!;
    expect(paid.status).toBe('delivered');
    const events = await api('GET', '/events?type=payment.succeeded');
    expect(events.status).toBe(200);
    expect((events.body.items as Json[]).map((e) => e.id)).toContain(paid.eventId);
    expect(received.some((r) => r.id === paid.eventId && r.answered === 200)).toBe(true);
    const attemptsWith500 = (deliveries.body.items as Json[]).flatMap((d) =>
      (d.attempts as Json[]).filter((a) => a.statusCode === 500),
    );
    expect(attemptsWith500).toHaveLength(3);
    expect(attemptsWith500[0]).toMatchObject({ errorCode: 'http_500', responseExcerpt: 'try later' });

    // Catching up: after the first event, the rest, oldest first.
    const all = (await api('GET', '/events')).body.items as Json[];
    const after = await api('GET', `/events?after=${all[0]!.id}`);
    expect((after.body.items as Json[]).map((e) => e.id)).toEqual(all.slice(1).map((e) => e.id));

    const metric = await registry.getSingleMetric('hipaa_billing_webhook_deliveries_total')!.get();
    const count = (outcome: string) => metric.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
    expect(count('failed')).toBeGreaterThanOrEqual(3);
    expect(count('delivered')).toBeGreaterThanOrEqual(succeeded.length);

    // The failures started a failing streak; the success of their retries ended it, so an endpoint that answers again
    // is never disabled for that streak.
    const stored = await system.ctx.db.models.WebhookEndpoint.findById(endpoint.id).lean();
    expect(stored).not.toBeNull();
    expect(stored!.failingSince).toBeUndefined();

    // Each event was fanned out in full: none keeps the mark that would have the outbox sweep fan it out again.
    const marked = await system.ctx.db.models.OutgoingEvent.find({ _id: { $in: all.map((e) => e.id) } }).lean();
    expect(marked).toHaveLength(all.length);
    expect(marked.filter((event) => event.fanOutPending)).toEqual([]);

    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 60_000);

  it('an endpoint whose deliveries all fail for the configured time is disabled, and that is audited', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/gone`;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const endpoint = await createEndpoint({ url: deadUrl, enabledEvents: ['payment.succeeded'] });
    await charge(900);
    const after = await waitFor(
      () => api('GET', `/webhook-endpoints/${endpoint.id}`),
      (r) => r.body.disabled === true,
      { what: 'the failing endpoint to be disabled', timeoutMs: 30_000 },
    );
    expect(after.body.disabledReason).toBe('failing');
    await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': endpoint.id }).lean(),
      (events) => events.some((e) => e.action === 'webhook_endpoint.disabled'),
      { what: 'the audit event of the disabling' },
    );
    const deliveries = await api('GET', `/webhook-endpoints/${endpoint.id}/deliveries`);
    const attempts = (deliveries.body.items as Json[])[0]!.attempts as Json[];
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts[0]!.errorCode).toBe('connection_failed');
    // Enabling it again clears the streak; a redelivery is refused while it is disabled.
    const refused = await api(
      'POST',
      `/webhook-endpoints/${endpoint.id}/deliveries/${(deliveries.body.items as Json[])[0]!.id}/redeliver`,
    );
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('webhook_endpoint_disabled');
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 45_000);

  it('a subscription: created, its period paid (renewed, invoice finalized), canceled; each verified', async () => {
    const endpoint = await createEndpoint({
      url: receiverUrl,
      enabledEvents: ['subscription.created', 'subscription.renewed', 'subscription.canceled', 'invoice.finalized'],
    });
    const plan = await api('POST', '/plans', {
      key: `wh-plan-${ulid()}`,
      body: {
        category: 'membership',
        name: 'Wellness membership',
        amount: 2_500,
        currency: 'usd',
        interval: { unit: 'month', count: 1 },
      },
    });
    expect(plan.status).toBe(201);
    const clock = await api('POST', '/test-clocks', {
      key: `wh-clock-${ulid()}`,
      body: { frozenTime: '2026-03-01T12:00:00Z' },
    });
    expect(clock.status).toBe(201);
    const paymentMethodId = await insertSavedCard(system.ctx.db, {
      companyId,
      customerRef: CUSTOMER,
      paymentMethod: 'pm_card_visa',
      savedBy: `test-${ulid()}`,
    });
    const created = await api('POST', '/subscriptions', {
      key: `wh-sub-${ulid()}`,
      body: { planId: plan.body.id, customerRef: CUSTOMER, paymentMethodId, testClockId: clock.body.id },
    });
    expect(created.status).toBe(201);
    const subId = created.body.id as string;
    await waitFor(
      () => api('GET', `/subscriptions/${subId}`),
      (r) => r.body.status === 'active',
      { what: 'the subscription to be active' },
    );
    expect((await api('PATCH', `/subscriptions/${subId}`, { body: { cancelAt: 'now' } })).body.status).toBe('canceled');
    const types = () => received.filter((r) => r.answered === 200).map((r) => JSON.parse(r.body).type as string);
    await waitFor(
      async () => types(),
      (seen) =>
        ['subscription.created', 'subscription.renewed', 'subscription.canceled', 'invoice.finalized'].every((t) =>
          seen.includes(t),
        ),
      { what: 'the subscription events', timeoutMs: 30_000 },
    );
    const canceled = JSON.parse(delivered('subscription.canceled', subId)[0]!.body) as Json;
    expect(canceled.data).toMatchObject({ object: 'subscription', id: subId, status: 'canceled', amount: 2_500 });
    for (const delivery of received) {
      expect(() => new Webhook(endpoint.secret).verify(delivery.body, delivery.headers as any)).not.toThrow();
      expect(delivery.body).not.toContain(CUSTOMER);
      expect(delivery.body).not.toContain(PHI.name);
    }
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 60_000);

  it('rotation: both the old and the new secret verify during the grace period', async () => {
    const endpoint = await createEndpoint({ url: receiverUrl, enabledEvents: ['payment.succeeded'] });
    const rotated = await api('POST', `/webhook-endpoints/${endpoint.id}/rotate-secret`);
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(endpoint.secret);
    expect(rotated.body.previousSecretExpiresAt).toBeDefined();
    const paymentId = await charge(1_500);
    await waitFor(
      async () => received,
      () => delivered('payment.succeeded', paymentId).length > 0,
      {
        what: 'the delivery after a rotation',
      },
    );
    const delivery = delivered('payment.succeeded', paymentId)[0]!;
    expect(String(delivery.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(() => new Webhook(endpoint.secret).verify(delivery.body, delivery.headers as any)).not.toThrow();
    expect(() => new Webhook(rotated.body.secret).verify(delivery.body, delivery.headers as any)).not.toThrow();
    // Only payment.succeeded was asked for.
    expect(received.every((r) => JSON.parse(r.body).type === 'payment.succeeded')).toBe(true);
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 30_000);

  it('disable, enable and redeliver', async () => {
    const endpoint = await createEndpoint({ url: receiverUrl, enabledEvents: ['payment.succeeded'] });
    const disabled = await api('PATCH', `/webhook-endpoints/${endpoint.id}`, { body: { disabled: true } });
    expect(disabled.status).toBe(200);
    expect(disabled.body).toMatchObject({ disabled: true, disabledReason: 'disabled_by_user' });
    const quiet = await charge(1_100);
    // The payment's event is stored (the events API has it) but nothing is delivered to a disabled endpoint.
    await waitFor(
      () => api('GET', '/events?type=payment.succeeded&limit=100'),
      (r) => (r.body.items as Json[]).some((e) => e.payload.data.id === quiet),
      { what: 'the event of a payment made while disabled' },
    );
    expect(delivered('payment.succeeded', quiet)).toHaveLength(0);
    expect((await api('GET', `/webhook-endpoints/${endpoint.id}/deliveries`)).body.items).toHaveLength(0);

    expect((await api('PATCH', `/webhook-endpoints/${endpoint.id}`, { body: { disabled: false } })).status).toBe(200);
    const loud = await charge(1_300);
    await waitFor(
      async () => received,
      () => delivered('payment.succeeded', loud).length === 1,
      {
        what: 'delivery after enabling',
      },
    );
    const deliveries = await api('GET', `/webhook-endpoints/${endpoint.id}/deliveries`);
    const first = (deliveries.body.items as Json[])[0]!;
    const again = await api('POST', `/webhook-endpoints/${endpoint.id}/deliveries/${first.id}/redeliver`);
    expect(again.status).toBe(202);
    await waitFor(
      async () => received,
      () => delivered('payment.succeeded', loud).length === 2,
      {
        what: 'the redelivery',
      },
    );
    const [one, two] = delivered('payment.succeeded', loud);
    expect(two!.id).toBe(one!.id);
    expect(two!.body).toBe(one!.body);
    expect(() => new Webhook(endpoint.secret).verify(two!.body, two!.headers as any)).not.toThrow();
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 30_000);

  it('a delivery left pending without its job is sent by the outbox sweep, same webhook-id; one not yet due is not', async () => {
    const endpoint = await createEndpoint({ url: receiverUrl, enabledEvents: ['*'] });
    const { WebhookDelivery } = system.ctx.db.models;
    const queue = system.ctx.queues['webhook-deliveries'];
    // Three deliveries stored as the audit path stores them, whose jobs were never queued (Redis lost the add).
    const lost = await insertOutgoingDeliveries(system.ctx.db.models, { companyId, endpointIds: [endpoint.id] });
    const redelivered = await insertOutgoingDeliveries(system.ctx.db.models, { companyId, endpointIds: [endpoint.id] });
    const waiting = await insertOutgoingDeliveries(system.ctx.db.models, { companyId, endpointIds: [endpoint.id] });
    // Its second redelivery was asked for; the sweep queues that one (a job of its own).
    await WebhookDelivery.updateOne({ _id: redelivered.deliveryIds[0] }, { $set: { redeliveries: 2 } });
    // Waiting out its retry schedule: its next attempt is an hour away.
    const inAnHour = new Date(Date.now() + 60 * 60 * 1000);
    await WebhookDelivery.updateOne({ _id: waiting.deliveryIds[0] }, { $set: { nextAttemptAt: inAnHour } });

    // The two without a job are given one; the one not yet due is not looked at.
    expect((await system.sweepNow()).requeuedBy?.['webhook-deliveries']).toBe(2);

    await waitFor(
      async () => received,
      (all) => [lost, redelivered].every((stored) => all.some((r) => r.id === stored.eventId && r.answered === 200)),
      { what: 'the swept deliveries to arrive' },
    );
    for (const stored of [lost, redelivered]) {
      const arrived = received.filter((r) => r.id === stored.eventId);
      expect(arrived).toHaveLength(1);
      expect(arrived[0]!.body).toBe(stored.body);
      expect(() => new Webhook(endpoint.secret).verify(arrived[0]!.body, arrived[0]!.headers as any)).not.toThrow();
    }
    await waitFor(
      () => api('GET', `/webhook-endpoints/${endpoint.id}/deliveries`),
      (r) =>
        (r.body.items as Json[]).filter((d) => d.status === 'delivered').length === 2 &&
        (r.body.items as Json[]).every((d) => d.status === 'delivered' || d.id === waiting.deliveryIds[0]),
      { what: 'the swept deliveries to be recorded delivered' },
    );
    expect(
      await queue.getJob(webhookDeliveryJobId({ deliveryId: redelivered.deliveryIds[0]!, redelivery: 2 })),
    ).toBeDefined();
    expect(received.some((r) => r.id === waiting.eventId)).toBe(false);
    expect(await queue.getJob(webhookDeliveryJobId({ deliveryId: waiting.deliveryIds[0]! }))).toBeUndefined();
    expect((await WebhookDelivery.findById(waiting.deliveryIds[0]).lean())?.status).toBe('pending');

    // Swept again: the delivered ones are not sent again.
    expect((await system.sweepNow()).requeuedBy?.['webhook-deliveries']).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(received.filter((r) => r.id === lost.eventId || r.id === redelivered.eventId)).toHaveLength(2);
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 30_000);

  it('an event stored without its deliveries (its emitter stopped between the writes) is fanned out by the outbox sweep', async () => {
    const endpoint = await createEndpoint({ url: receiverUrl, enabledEvents: ['*'] });
    const { OutgoingEvent, WebhookDelivery } = system.ctx.db.models;
    // As the emitter leaves an event when its process is killed after storing it: marked, no delivery.
    const lost = await insertOutgoingDeliveries(system.ctx.db.models, {
      companyId,
      endpointIds: [],
      fanOutPending: true,
    });

    expect((await system.sweepNow()).requeuedBy?.['webhook-events']).toBe(1);

    await waitFor(
      async () => received,
      (all) => all.some((r) => r.id === lost.eventId && r.answered === 200),
      { what: 'the swept event to arrive' },
    );
    const arrived = received.filter((r) => r.id === lost.eventId);
    expect(arrived).toHaveLength(1);
    expect(arrived[0]!.body).toBe(lost.body);
    expect(() => new Webhook(endpoint.secret).verify(arrived[0]!.body, arrived[0]!.headers as any)).not.toThrow();
    await waitFor(
      async () => WebhookDelivery.find({ eventId: lost.eventId }).lean(),
      (deliveries) => deliveries.length === 1 && deliveries[0]!.status === 'delivered',
      { what: "the swept event's delivery to be recorded delivered" },
    );
    expect((await OutgoingEvent.findById(lost.eventId).lean())?.fanOutPending).toBeUndefined();

    // Swept again: nothing is left to fan out, and the event is not sent again.
    expect((await system.sweepNow()).requeuedBy?.['webhook-events']).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(received.filter((r) => r.id === lost.eventId)).toHaveLength(1);
    expect((await api('DELETE', `/webhook-endpoints/${endpoint.id}`)).status).toBe(204);
  }, 30_000);

  it('refuses bad input with a clear code and changes nothing; roles without webhooks:manage get 403', async () => {
    const count = () => system.ctx.db.models.WebhookEndpoint.countDocuments({ companyId });
    const before = await count();
    for (const url of [
      'http://10.0.0.5/hook',
      'http://169.254.169.254/latest/meta-data',
      'http://[fd00::1]/x',
      'http://metadata.google.internal/x',
      'ftp://example.com/x',
    ]) {
      const refused = await api('POST', '/webhook-endpoints', { body: { url, enabledEvents: ['*'] } });
      expect(refused.status).toBe(422);
      expect(refused.body.error.code).toBe('webhook_url_refused');
    }
    const badEvents = await api('POST', '/webhook-endpoints', {
      body: { url: receiverUrl, enabledEvents: ['payment.teleported'] },
    });
    expect(badEvents.status).toBe(400);
    expect(badEvents.body.error.code).toBe('invalid_request');
    const manager = await system.token(companyId, ['billing_manager'], { subject: 'usr-manager' });
    const denied = await api('POST', '/webhook-endpoints', {
      token: manager,
      body: { url: receiverUrl, enabledEvents: ['*'] },
    });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('permission_missing');
    expect((await api('GET', '/events', { token: manager })).status).toBe(403);
    expect(await count()).toBe(before);
  });
});
