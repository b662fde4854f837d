import { userInfo } from 'node:os';
import { ulid } from 'ulid';
import type { PaymentStatus } from '../../domain/payment-status';
import { createCompany, shredCompany } from '../../models/companies';
import { companyKeyAltName } from '../../models/encryption';
import type { WebhookEventStatus } from '../../models/webhook-event.model';
import { closeQueues, createQueues } from '../../queues';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment } from '../support/records';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';
import { assertBuildIsCurrent } from '../support/processes';
import { cli } from '../support/cli';
import { stripeEventJobId } from '../../queues/stripe-events.queue';

const WEBHOOK_SECRET = 'whsec_ReplayWebhookSecret0001';
const CUSTOMER = 'cus_ReplayPatientRef01';

let system: InProcessSystem;
let companyId: string;
let admin: string;

function succeededEvent(paymentId: string) {
  return stripeEventEnvelope(`evt_${ulid()}`, 'payment_intent.succeeded', {
    id: `pi_${paymentId.slice(4)}`,
    object: 'payment_intent',
    amount: 1200,
    currency: 'usd',
    customer: CUSTOMER,
    status: 'succeeded',
    metadata: { payment_id: paymentId },
  });
}

async function deliver(event: object) {
  const response = await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET });
  expect(response.status).toBe(200);
}

/** A row as the receiver stores it, but with no job: as if the process died right after the insert. */
async function storeEvent(company: string, event: { id: string; type: string }, status: WebhookEventStatus) {
  await inbox().create({
    _id: event.id,
    companyId: company,
    type: event.type,
    livemode: false,
    created: new Date(),
    receivedAt: new Date(),
    status,
    ...(status === 'received' ? {} : { outcome: { reason: 'payment_not_found' }, processedAt: new Date() }),
    payload: await system.ctx.db.encryption.encrypt(company, JSON.stringify(event)),
  });
}

/** A payment whose PaymentIntent the charges worker created (its id recorded): the one the events name. */
async function createPayment(paymentId: string, status: PaymentStatus) {
  await insertPayment(system.ctx.db.models, {
    _id: paymentId,
    companyId,
    status,
    customer: CUSTOMER,
    stripePaymentIntentId: `pi_${paymentId.slice(4)}`,
  });
}

async function replay(
  eventId: string,
  options: { token?: string; company?: string; body?: unknown; url?: string } = {},
) {
  const response = await fetch(
    `${options.url ?? system.url}/v1/companies/${options.company ?? companyId}/webhook-events/${eventId}/replay`,
    {
      method: 'POST',
      headers: { authorization: `Bearer ${options.token ?? admin}`, 'content-type': 'application/json' },
      body: JSON.stringify(options.body ?? { reason: 'payment_created_late' }),
    },
  );
  return { status: response.status, body: (await response.json()) as any };
}

const inbox = () => system.ctx.db.models.WebhookEvent;

/** Waits until the given replay of an event (0: its first processing) has been processed. */
async function processed(eventId: string, replays: number) {
  const row = await waitFor(
    () => inbox().findById(eventId, { payload: 0 }).lean(),
    (row) => Boolean(row && row.status !== 'received' && row.replays === replays),
    { what: `stripe event ${eventId} to be processed (replay ${replays})` },
  );
  return row!;
}

/** The audit events recorded about one Stripe event: received, its outcomes, its replays. */
async function auditedAbout(eventId: string, company = companyId) {
  const events = await system.ctx.db.models.AuditEvent.find({ companyId: company, action: /^webhook\./ }).lean();
  return events.filter((e) => e._id.includes(eventId));
}

function outcomesOf(events: Awaited<ReturnType<typeof auditedAbout>>) {
  return events
    .filter((e) => e.action === 'webhook.applied' || e.action === 'webhook.ignored')
    .map((e) => `${e.action}:${e.reason}`)
    .sort();
}

async function newRow(eventId: string) {
  return inbox().findById(eventId, { payload: 0 }).lean();
}

beforeAll(async () => {
  system = await startInProcessSystem('webhook_replay');
  companyId = await createCompany(system.ctx.db, { name: 'Harbor Clinic' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-ops-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51HarborReplayKey0001',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
});

afterAll(async () => {
  if (!system) return;
  expect(system.ctx.logs.text).not.toContain(WEBHOOK_SECRET);
  expect(system.ctx.logs.text).not.toContain(CUSTOMER);
  await system.close();
});

describe('replaying a stored Stripe webhook event', () => {
  it('applies an event that arrived before its payment existed; each replay is processed and audited once', async () => {
    const paymentId = `pay_${ulid()}`;
    const event = succeededEvent(paymentId);
    await deliver(event);
    expect(await processed(event.id, 0)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'payment_not_found' },
    });

    // The upstream app's payment record shows up late; ops replay the event.
    await createPayment(paymentId, 'processing');
    expect(await replay(event.id)).toEqual({
      status: 202,
      body: { id: event.id, status: 'received', replays: 1 },
    });
    expect(await processed(event.id, 1)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'processing_to_succeeded', paymentId },
    });
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('succeeded');

    // A second replay is processed again, and changes nothing this time.
    expect((await replay(event.id, { body: { reason: 'double_check' } })).body).toEqual({
      id: event.id,
      status: 'received',
      replays: 2,
    });
    expect(await processed(event.id, 2)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'already_in_state' },
    });

    const audit = await waitFor(
      () => auditedAbout(event.id),
      (events) => outcomesOf(events).length === 3 && events.filter((e) => e.action === 'webhook.replayed').length === 2,
      { what: 'two replays and three outcomes audited' },
    );
    expect(outcomesOf(audit)).toEqual([
      'webhook.applied:processing_to_succeeded',
      'webhook.ignored:already_in_state',
      'webhook.ignored:payment_not_found',
    ]);
    const replayed = audit.filter((e) => e.action === 'webhook.replayed').sort((a, b) => a.sequence - b.sequence);
    expect(replayed.map((e) => e.reason)).toEqual(['payment_created_late', 'double_check']);
    expect(replayed[0]).toMatchObject({
      outcome: 'success',
      actor: { type: 'user', id: 'usr-ops-admin', roles: ['company_admin'] },
      resource: { type: 'webhook_event', id: event.id },
      route: 'POST /v1/companies/:companyId/webhook-events/:eventId/replay',
      permission: 'webhook_events:replay',
      changes: [
        { field: 'status', before: 'ignored', after: 'received' },
        { field: 'outcome.reason', before: 'payment_not_found', after: null },
        { field: 'replays', before: '0', after: '1' },
      ],
    });
    expect(String(replayed[0]!.request?.sourceIp)).toBe('127.0.0.1');
    // The payment itself succeeded once.
    const paymentEvents = await system.ctx.db.models.AuditEvent.find({
      companyId,
      action: 'payment.succeeded',
      'resource.id': paymentId,
    }).lean();
    expect(paymentEvents).toHaveLength(1);
  });

  it('five concurrent replays of one event: every replay that happened is processed and audited once', async () => {
    const event = succeededEvent(`pay_${ulid()}`);
    await deliver(event);
    await processed(event.id, 0);

    const answers = await Promise.all(Array.from({ length: 5 }, () => replay(event.id)));
    expect(answers.map((a) => a.status)).toEqual([202, 202, 202, 202, 202]);
    // Requests that found the row already reset (and not yet processed) join that replay instead of adding one.
    const replays = Math.max(...answers.map((a) => a.body.replays as number));
    expect([...new Set(answers.map((a) => a.body.replays as number))].sort((a, b) => a - b)).toEqual(
      Array.from({ length: replays }, (_, i) => i + 1),
    );
    expect(await processed(event.id, replays)).toMatchObject({ status: 'ignored' });
    const audit = await waitFor(
      () => auditedAbout(event.id),
      (events) =>
        outcomesOf(events).length === replays + 1 &&
        events.filter((e) => e.action === 'webhook.replayed').length === replays,
      { what: `${replays} replays audited` },
    );
    expect(outcomesOf(audit)).toEqual(Array.from({ length: replays + 1 }, () => 'webhook.ignored:payment_not_found'));
    const ignoredLogs = system.ctx.logs.lines
      .map((line) => JSON.parse(line) as { msg?: string; eventId?: string })
      .filter((line) => line.msg === 'stripe event ignored' && line.eventId === event.id);
    expect(ignoredLogs).toHaveLength(replays + 1);
  });

  it('only queues an event that was never processed (its job was lost): not counted as a replay', async () => {
    const paymentId = `pay_${ulid()}`;
    await createPayment(paymentId, 'processing');
    const event = succeededEvent(paymentId);
    await storeEvent(companyId, event, 'received');

    expect(await replay(event.id)).toEqual({
      status: 202,
      body: { id: event.id, status: 'received', replays: 0 },
    });
    expect(await processed(event.id, 0)).toMatchObject({ status: 'applied' });
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('succeeded');
  });

  it("answers 404 for another company's event, exactly as for an unknown one, and changes nothing", async () => {
    const event = succeededEvent(`pay_${ulid()}`);
    await deliver(event);
    await processed(event.id, 0);
    const other = await createCompany(system.ctx.db, { name: 'Other Clinic' });
    const otherAdmin = await system.token(other, ['company_admin'], { subject: 'usr-other-admin' });

    const foreign = await replay(event.id, { token: otherAdmin, company: other });
    const unknown = await replay(`evt_${ulid()}`, { token: otherAdmin, company: other });
    expect(foreign).toEqual({
      status: 404,
      body: { error: { code: 'webhook_event_not_found', message: 'no such webhook event' } },
    });
    expect(unknown).toEqual(foreign);
    // The other company's token on this company's path is refused by the access policy.
    const crossed = await replay(event.id, { token: otherAdmin });
    expect(crossed.status).toBe(403);
    expect(crossed.body.error.code).toBe('company_out_of_scope');

    expect(await newRow(event.id)).toMatchObject({ status: 'ignored', replays: 0 });
    await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId: other, action: 'access.denied' }).lean(),
      (events) => events.length === 1,
      { what: 'the cross-company denial audited' },
    );
    expect((await auditedAbout(event.id)).filter((e) => e.action === 'webhook.replayed')).toEqual([]);
  });

  it('refuses a caller without webhook_events:replay (403, audited) and bad input (400); nothing changes', async () => {
    const event = succeededEvent(`pay_${ulid()}`);
    await deliver(event);
    await processed(event.id, 0);
    const manager = await system.token(companyId, ['billing_manager'], { subject: 'usr-billing-manager' });

    const denied = await replay(event.id, { token: manager });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('permission_missing');
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'access.denied',
          'actor.id': 'usr-billing-manager',
        }).lean(),
      (events) =>
        events.length === 1 && events[0]!.permission === 'webhook_events:replay' && events[0]!.resource.id === event.id,
      { what: 'the denial audited' },
    );

    for (const [body, field] of [
      [{}, 'reason'],
      [{ reason: 'The payment was created late' }, 'reason'],
      [{ reason: 'payment_created_late', force: true }, 'force'],
    ] as const) {
      const refused = await replay(event.id, { body });
      expect(refused.status).toBe(400);
      expect(refused.body.error.details.map((d: { field: string }) => d.field)).toEqual([field]);
    }
    const malformed = await replay('evt-not:an-id');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('invalid_request');

    expect(await newRow(event.id)).toMatchObject({ status: 'ignored', replays: 0 });
    expect((await auditedAbout(event.id)).filter((e) => e.action === 'webhook.replayed')).toEqual([]);
  });

  it("answers 410 data_shredded for a crypto-shredded company's event, and changes nothing", async () => {
    const closed = await createCompany(system.ctx.db, { name: 'Closed Clinic' });
    const closedAdmin = await system.token(closed, ['company_admin']);
    const event = succeededEvent(`pay_${ulid()}`);
    await storeEvent(closed, event, 'ignored');
    await shredCompany(system.ctx.db, closed);

    const response = await replay(event.id, { token: closedAdmin, company: closed });
    expect(response.status).toBe(410);
    expect(response.body.error.code).toBe('data_shredded');
    expect(await newRow(event.id)).toMatchObject({ status: 'ignored', replays: 0 });
    // Nothing made a new data key for it (the audit context is sealed under the company's key).
    const [vaultDb, vault] = system.ctx.config.keyVaultNamespace.split('.') as [string, string];
    expect(
      await system.ctx.rawMongo
        .db(vaultDb)
        .collection(vault)
        .countDocuments({ keyAltNames: companyKeyAltName(closed) }),
    ).toBe(0);
  });

  it('keeps a replay whose enqueue failed (Redis down: 503); a retry queues it without a second reset, audited once', async () => {
    const paymentId = `pay_${ulid()}`;
    const event = succeededEvent(paymentId);
    await deliver(event);
    await processed(event.id, 0);
    await createPayment(paymentId, 'processing');

    await system.withRedisDownApi(async (url) => {
      const response = await replay(event.id, { url });
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('queue_unavailable');
    });
    expect(await newRow(event.id)).toMatchObject({ status: 'received', replays: 1 });

    expect(await replay(event.id)).toEqual({
      status: 202,
      body: { id: event.id, status: 'received', replays: 1 },
    });
    expect(await processed(event.id, 1)).toMatchObject({ status: 'applied' });
    const audit = await waitFor(
      () => auditedAbout(event.id),
      (events) => events.some((e) => e.action === 'webhook.applied'),
      { what: 'the replay outcome audited' },
    );
    expect(audit.filter((e) => e.action === 'webhook.replayed')).toHaveLength(1);
  });

  it('finishes a replay cut off before its enqueue through the outbox sweep', async () => {
    const paymentId = `pay_${ulid()}`;
    const event = succeededEvent(paymentId);
    await deliver(event);
    await processed(event.id, 0);
    // Not `processing`: the sweep would also re-run the charge of a payment stale in that state.
    await createPayment(paymentId, 'requires_action');

    await system.withRedisDownApi(async (url) => {
      expect((await replay(event.id, { url })).status).toBe(503);
    });
    // The event's first job is still kept as completed: the sweep queues the replay's own job instead.
    const sweep = await system.sweepNow();
    expect(sweep.requeued).toBeGreaterThanOrEqual(1);
    // Under the replay's own job id (what ops see on the dashboard, and what a late enqueue dedupes against).
    const queues = createQueues(system.ctx.redis, system.ctx.config.queuePrefix);
    try {
      expect(await queues['stripe-events'].getJob(stripeEventJobId(event.id, 1))).toBeDefined();
    } finally {
      await closeQueues(queues);
    }
    expect(await processed(event.id, 1)).toMatchObject({
      status: 'applied',
      outcome: { reason: 'requires_action_to_succeeded' },
    });
    expect((await system.ctx.db.models.Payment.findById(paymentId).lean())?.status).toBe('succeeded');
  });

  it('replays from the CLI, audited with the operator and reason', async () => {
    // It runs the compiled CLI.
    assertBuildIsCurrent();
    const paymentId = `pay_${ulid()}`;
    const event = succeededEvent(paymentId);
    await deliver(event);
    await processed(event.id, 0);
    await createPayment(paymentId, 'processing');

    const done = await cli(
      ['webhook-events', 'replay', '--company', companyId, '--reason', 'ops_fix', event.id],
      system.ctx.env,
    );
    expect(done).toEqual({ code: 0, out: `${JSON.stringify({ id: event.id, status: 'received', replays: 1 })}\n` });
    expect(await processed(event.id, 1)).toMatchObject({ status: 'applied' });
    const audit = await waitFor(
      () => auditedAbout(event.id),
      (events) => events.some((e) => e.action === 'webhook.replayed'),
      { what: 'the CLI replay audited' },
    );
    expect(audit.find((e) => e.action === 'webhook.replayed')).toMatchObject({
      actor: { type: 'user', id: `cli-${userInfo().username}` },
      reason: 'ops_fix',
    });

    const unknown = await cli(
      ['webhook-events', 'replay', '--company', companyId, '--reason', 'ops_fix', 'evt_Nope1'],
      system.ctx.env,
    );
    expect(unknown).toEqual({ code: 1, out: `no webhook event evt_Nope1 for company ${companyId}\n` });
    const noReason = await cli(['webhook-events', 'replay', '--company', companyId, event.id], system.ctx.env);
    expect(noReason.code).toBe(1);
    expect(noReason.out).toContain('needs --reason');
    expect(await newRow(event.id)).toMatchObject({ replays: 1 });
  });
});
