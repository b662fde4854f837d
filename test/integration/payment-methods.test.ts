import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { savedPaymentMethodId } from '../../models/saved-payment-method.model';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

let system: InProcessSystem;
let companyId: string;
let otherCompanyId: string;
let admin: string;

const WEBHOOK_SECRET = 'whsec_PaymentMethodsSecret0001';
const OTHER_SECRET = 'whsec_PaymentMethodsOther00002';
/** An office named for the kind of care it gives: its id must never reach Stripe. */
const SENSITIVE_OFFICE = 'behavioral-health';

type Json = Record<string, any>;

async function api(method: string, path: string, options: { token?: string; body?: unknown; key?: string } = {}) {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? admin}` };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (options.key) headers['idempotency-key'] = options.key;
  const response = await fetch(`${system.url}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  return { status: response.status, body: (await response.json()) as Json };
}

const setupIntent = (body: unknown, options: { token?: string; company?: string; key?: string } = {}) =>
  api('POST', `/v1/companies/${options.company ?? companyId}/payment-methods/setup-intents`, {
    body,
    token: options.token,
    key: options.key,
  });

const listMethods = (query: string, options: { token?: string; company?: string } = {}) =>
  api('GET', `/v1/companies/${options.company ?? companyId}/payment-methods?${query}`, { token: options.token });

/** The Stripe requests made while `run` ran. */
async function stripeRequestsDuring(run: () => Promise<unknown>) {
  const before = system.sim.requests.length;
  await run();
  return system.sim.requests.slice(before);
}

const posts = (requests: typeof system.sim.requests, path: string) =>
  requests.filter((r) => r.method === 'POST' && r.path === path);

/** A SetupIntent made through the API, and the Stripe Customer it was made on (as sent to Stripe). */
async function startSetup(customerRef: string, officeId?: string, token = admin) {
  let created!: Awaited<ReturnType<typeof setupIntent>>;
  const requests = await stripeRequestsDuring(async () => {
    created = await setupIntent({ customerRef, ...(officeId ? { officeId } : {}) }, { token });
  });
  expect(created.status).toBe(201);
  const [sent] = posts(requests, '/v1/setup_intents');
  return { setupIntentId: created.body.setupIntentId as string, customer: String(sent?.form.customer) };
}

function succeededEvent(
  setup: { setupIntentId: string; customer: string },
  extra: { metadata?: Record<string, string>; livemode?: boolean; paymentMethod?: string } = {},
) {
  const event = stripeEventEnvelope(`evt_${ulid()}`, 'setup_intent.succeeded', {
    id: setup.setupIntentId,
    object: 'setup_intent',
    customer: setup.customer,
    payment_method: extra.paymentMethod ?? 'pm_card_visa',
    status: 'succeeded',
    usage: 'off_session',
    livemode: extra.livemode ?? false,
    metadata: extra.metadata ?? {},
  });
  return { ...event, livemode: extra.livemode ?? false };
}

async function deliverAndFinish(event: { id: string }, configId = companyId, secret = WEBHOOK_SECRET) {
  const response = await deliverSigned(system.url, configId, event, { secret });
  expect(response.status).toBe(200);
  return waitFor(
    () => system.ctx.db.models.WebhookEvent.findById(event.id, { payload: 0 }).lean(),
    (row) => Boolean(row && row.status !== 'received'),
    { what: `stripe event ${event.id} to be processed` },
  );
}

beforeAll(async () => {
  system = await startInProcessSystem('payment_methods');
  companyId = await createCompany(system.ctx.db, { name: 'Harbor Family Practice' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51HarborPracticeKey01',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
  otherCompanyId = await createCompany(system.ctx.db, { name: 'Lakeside Clinic' });
  const otherAdmin = await system.token(otherCompanyId, ['company_admin'], { subject: 'usr-other-admin' });
  await configureStripeWebhooks(system, otherCompanyId, otherAdmin, {
    secretKey: 'sk_test_51LakesideClinicKey01',
    webhookSigningSecrets: [OTHER_SECRET],
  });
});

afterAll(async () => {
  expect(system.ctx.logs.text).not.toContain(WEBHOOK_SECRET);
  expect(system.ctx.logs.text).not.toContain('_secret_');
  await system.close();
});

describe('POST …/payment-methods/setup-intents', () => {
  it('makes one Stripe Customer per payer and account, carrying only our reference, and a card-only SetupIntent', async () => {
    const customerRef = `acct-${ulid()}`;
    let first!: Awaited<ReturnType<typeof setupIntent>>;
    const firstRequests = await stripeRequestsDuring(async () => {
      first = await setupIntent({ customerRef });
    });
    expect(first.status).toBe(201);
    expect(first.body).toEqual({
      setupIntentId: expect.stringMatching(/^seti_/),
      clientSecret: expect.stringContaining('_secret_'),
      customerRef,
    });

    const [customer] = posts(firstRequests, '/v1/customers');
    expect(posts(firstRequests, '/v1/customers')).toHaveLength(1);
    // Nothing that names the payer: no name, email, phone, address or description.
    expect(customer!.form).toEqual({ metadata: { customer_ref: customerRef } });
    const [intent] = posts(firstRequests, '/v1/setup_intents');
    expect(intent!.form).toEqual({
      customer: expect.stringMatching(/^cus_/),
      usage: 'off_session',
      allowed_payment_method_types: ['card'],
      metadata: { customer_ref: customerRef, company_id: companyId },
    });

    let second!: Awaited<ReturnType<typeof setupIntent>>;
    const secondRequests = await stripeRequestsDuring(async () => {
      second = await setupIntent({ customerRef });
    });
    expect(second.status).toBe(201);
    expect(second.body.setupIntentId).not.toBe(first.body.setupIntentId);
    expect(posts(secondRequests, '/v1/customers')).toHaveLength(0);
    expect(posts(secondRequests, '/v1/setup_intents')[0]!.form.customer).toBe(intent!.form.customer);

    // The Customer's id is stored once, encrypted under the company's key.
    const raw = await system.ctx.rawMongo
      .db()
      .collection('stripe_customers')
      .find({ companyId, customerRef })
      .toArray();
    expect(raw).toHaveLength(1);
    expect(raw[0]!.stripeCustomerId).toBeInstanceOf(Binary);
    expect((raw[0]!.stripeCustomerId as Binary).sub_type).toBe(6);
    expect(JSON.stringify(raw)).not.toContain(String(intent!.form.customer));

    const recorded = await system.ctx.db.models.SetupIntent.findById(first.body.setupIntentId).lean();
    expect(recorded).toMatchObject({ companyId, customerRef, configurationId: companyId, livemode: false });
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'payment_method.setup_started',
          'resource.id': first.body.setupIntentId,
        }).lean(),
      (events) => events.length === 1,
      { what: 'payment_method.setup_started audit event' },
    );
  });

  it('two racing requests for a new payer make one Customer', async () => {
    const customerRef = `acct-${ulid()}`;
    let answers: Array<Awaited<ReturnType<typeof setupIntent>>> = [];
    const requests = await stripeRequestsDuring(async () => {
      answers = await Promise.all([setupIntent({ customerRef }), setupIntent({ customerRef })]);
    });
    expect(answers.map((a) => a.status)).toEqual([201, 201]);
    const customers = new Set(posts(requests, '/v1/setup_intents').map((r) => r.form.customer));
    expect(customers.size).toBe(1);
    expect(await system.ctx.db.models.StripeCustomer.countDocuments({ companyId, customerRef })).toBe(1);
  });

  it('after a crash between Stripe and our insert, asks Stripe again under the same key and gets the same Customer', async () => {
    const customerRef = `acct-${ulid()}`;
    const first = await stripeRequestsDuring(() => setupIntent({ customerRef }));
    // As if the process stopped after Stripe answered and before the Customer was recorded.
    await system.ctx.db.models.StripeCustomer.deleteMany({ companyId, customerRef });
    const again = await stripeRequestsDuring(() => setupIntent({ customerRef }));
    const [made, remade] = [posts(first, '/v1/customers')[0]!, posts(again, '/v1/customers')[0]!];
    expect(remade.idempotencyKey).toBe(made.idempotencyKey);
    expect(posts(again, '/v1/setup_intents')[0]!.form.customer).toBe(
      posts(first, '/v1/setup_intents')[0]!.form.customer,
    );
    expect(await system.ctx.db.models.StripeCustomer.countDocuments({ companyId, customerRef })).toBe(1);
  });

  it('keeps the office in our record and out of every Stripe request', async () => {
    const customerRef = `acct-${ulid()}`;
    const requests = await stripeRequestsDuring(async () => {
      const created = await setupIntent({ customerRef, officeId: SENSITIVE_OFFICE });
      expect(created.status).toBe(201);
      const recorded = await system.ctx.db.models.SetupIntent.findById(created.body.setupIntentId).lean();
      expect(recorded?.officeId).toBe(SENSITIVE_OFFICE);
    });
    expect(requests.length).toBeGreaterThan(0);
    expect(JSON.stringify(requests)).not.toContain(SENSITIVE_OFFICE);
    expect(JSON.stringify(system.sim.requests)).not.toContain(SENSITIVE_OFFICE);
  });

  it('refuses a configuration without an attestation with 409, sending nothing to Stripe', async () => {
    const unattested = await createCompany(system.ctx.db, { name: 'Unattested Dental' });
    const unattestedAdmin = await system.token(unattested, ['company_admin'], { subject: 'usr-unattested' });
    const configured = await api('PUT', `/v1/companies/${unattested}/payment-config`, {
      token: unattestedAdmin,
      body: { mode: 'company', credentials: { secretKey: 'sk_test_51UnattestedKey0001' } },
    });
    expect(configured.status).toBeLessThan(300);
    const requests = await stripeRequestsDuring(async () => {
      const refused = await setupIntent(
        { customerRef: `acct-${ulid()}` },
        { company: unattested, token: unattestedAdmin },
      );
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe('gateway_not_attested');
    });
    expect(requests).toHaveLength(0);
    expect(await system.ctx.db.models.SetupIntent.countDocuments({ companyId: unattested })).toBe(0);
  });

  it.each([
    ['a card number', { customerRef: '4242424242424242' }],
    ['free text with spaces', { customerRef: 'Jane Doe' }],
    ['an email address', { customerRef: 'jane.doe@example.com' }],
    ['an unknown field', { customerRef: 'acct-ok-1', name: 'Jane Doe' }],
    ['a malformed office id', { customerRef: 'acct-ok-1', officeId: 'north office' }],
  ])('refuses %s with 400 and sends nothing to Stripe', async (_label, body) => {
    const requests = await stripeRequestsDuring(async () => {
      const refused = await setupIntent(body);
      expect(refused.status).toBe(400);
    });
    expect(requests).toHaveLength(0);
  });

  it('lets an office-scoped role start a setup for its own office only', async () => {
    const clerk = await system.token(companyId, ['billing_clerk'], { officeIds: ['off_north'], subject: 'usr-clerk' });
    expect((await setupIntent({ customerRef: `acct-${ulid()}`, officeId: 'off_north' }, { token: clerk })).status).toBe(
      201,
    );
    expect((await setupIntent({ customerRef: `acct-${ulid()}`, officeId: 'off_south' }, { token: clerk })).status).toBe(
      403,
    );
    expect((await setupIntent({ customerRef: `acct-${ulid()}` }, { token: clerk })).status).toBe(403);
  });
});

describe('setup_intent.succeeded and GET …/payment-methods', () => {
  it('stores the method of a SetupIntent we made, with its masked card, for the office and payer we recorded', async () => {
    const customerRef = `acct-${ulid()}`;
    const setup = await startSetup(customerRef, 'off_north');
    // Metadata is whatever the sender wrote: it names neither the payer nor the office we act on.
    const event = succeededEvent(setup, { metadata: { customer_ref: 'someone-else', office_id: 'off_south' } });
    const requests = await stripeRequestsDuring(async () => {
      expect(await deliverAndFinish(event)).toMatchObject({
        status: 'applied',
        outcome: { reason: 'payment_method_saved' },
      });
    });
    // The card's details were read with the company's key from the PaymentMethod, not taken from the event.
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/payment_methods/pm_card_visa']);

    const id = savedPaymentMethodId(companyId, setup.setupIntentId);
    const stored = await system.ctx.db.models.SavedPaymentMethod.findById(id).lean();
    expect(stored).toMatchObject({
      companyId,
      officeId: 'off_north',
      customerRef,
      setupIntentId: setup.setupIntentId,
      stripeCustomerId: setup.customer,
      stripePaymentMethodId: 'pm_card_visa',
      card: { brand: 'visa', last4: '4242', expMonth: expect.any(Number), expYear: expect.any(Number) },
    });
    const raw = await system.ctx.rawMongo
      .db()
      .collection('saved_payment_methods')
      .findOne({ _id: id as never });
    expect(raw?.stripePaymentMethodId).toBeInstanceOf(Binary);
    expect(raw?.stripeCustomerId).toBeInstanceOf(Binary);

    const listed = await listMethods(`customerRef=${customerRef}`);
    expect(listed.status).toBe(200);
    expect(listed.body).toEqual({
      items: [
        {
          id,
          customerRef,
          officeId: 'off_north',
          brand: 'visa',
          last4: '4242',
          expMonth: stored!.card!.expMonth,
          expYear: stored!.card!.expYear,
          createdAt: stored!.createdAt.toISOString(),
        },
      ],
    });
    // No Stripe id goes out (our own `spm_` id does).
    expect(JSON.stringify(listed.body)).not.toMatch(/\b(?:pm|cus|seti)_/);
    expect(await listMethods('customerRef=someone-else')).toMatchObject({ status: 200, body: { items: [] } });
  });

  it('ignores an event for a SetupIntent we never created (setup_intent_unknown), asking Stripe nothing', async () => {
    const event = succeededEvent(
      { setupIntentId: `seti_${ulid()}`, customer: 'cus_MadeByHandInDashboard' },
      { metadata: { customer_ref: 'acct-forged', company_id: companyId } },
    );
    const requests = await stripeRequestsDuring(async () => {
      expect(await deliverAndFinish(event)).toMatchObject({
        status: 'ignored',
        outcome: { reason: 'setup_intent_unknown' },
      });
    });
    expect(requests).toHaveLength(0);
    expect(await system.ctx.db.models.SavedPaymentMethod.countDocuments({ customerRef: 'acct-forged' })).toBe(0);
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({ companyId, action: 'webhook.ignored', 'resource.id': event.id }).lean(),
      (events) => events.length === 1 && events[0]!.reason === 'setup_intent_unknown',
      { what: 'webhook.ignored audit event' },
    );
  });

  it("ignores another company's SetupIntent delivered through this company's endpoint", async () => {
    const setup = await startSetup(`acct-${ulid()}`);
    const event = succeededEvent(setup);
    expect(await deliverAndFinish(event, otherCompanyId, OTHER_SECRET)).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'setup_intent_unknown' },
    });
  });

  it("ignores an event whose livemode is not the recording key's mode", async () => {
    const setup = await startSetup(`acct-${ulid()}`);
    expect(await deliverAndFinish(succeededEvent(setup, { livemode: true }))).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'livemode_mismatch' },
    });
    expect(await system.ctx.db.models.SavedPaymentMethod.countDocuments({ setupIntentId: setup.setupIntentId })).toBe(
      0,
    );
  });

  it('stores the method once however often its event is delivered', async () => {
    const customerRef = `acct-${ulid()}`;
    const setup = await startSetup(customerRef);
    const event = succeededEvent(setup);
    const statuses = await Promise.all(
      [1, 2, 3].map(async () => (await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET })).status),
    );
    expect(statuses).toEqual([200, 200, 200]);
    expect(await deliverAndFinish(event)).toMatchObject({ status: 'applied' });
    // Another event about the same SetupIntent (Stripe may send one again under a new id).
    expect(await deliverAndFinish({ ...event, id: `evt_${ulid()}` })).toMatchObject({
      status: 'ignored',
      outcome: { reason: 'already_saved' },
    });
    expect(await system.ctx.db.models.SavedPaymentMethod.countDocuments({ companyId, customerRef })).toBe(1);
    const listed = await listMethods(`customerRef=${customerRef}`);
    expect(listed.body.items).toHaveLength(1);
    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.find({
          companyId,
          action: 'payment_method.saved',
          'resource.id': savedPaymentMethodId(companyId, setup.setupIntentId),
        }).lean(),
      (events) => events.length === 1,
      { what: 'one payment_method.saved audit event' },
    );
  });

  it("lists only to the company's callers, and to office-scoped roles only their offices' methods", async () => {
    const customerRef = `acct-${ulid()}`;
    for (const officeId of ['off_north', 'off_south']) {
      const setup = await startSetup(customerRef, officeId);
      expect(await deliverAndFinish(succeededEvent(setup))).toMatchObject({ status: 'applied' });
    }
    expect((await listMethods(`customerRef=${customerRef}`)).body.items).toHaveLength(2);

    const outsider = await system.token(otherCompanyId, ['company_admin'], { subject: 'usr-outsider' });
    const foreign = await listMethods(`customerRef=${customerRef}`, { token: outsider });
    expect(foreign.status).toBe(403);
    expect(JSON.stringify(foreign.body)).not.toContain('4242');
    // Its own company's path finds nothing of this company's payer.
    const own = await listMethods(`customerRef=${customerRef}`, { token: outsider, company: otherCompanyId });
    expect(own).toMatchObject({ status: 200, body: { items: [] } });

    const northManager = await system.token(companyId, ['office_manager'], {
      officeIds: ['off_north'],
      subject: 'usr-north',
    });
    const north = await listMethods(`customerRef=${customerRef}`, { token: northManager });
    expect(north.status).toBe(200);
    expect(north.body.items.map((item: Json) => item.officeId)).toEqual(['off_north']);
    expect((await listMethods(`customerRef=${customerRef}&officeId=off_south`, { token: northManager })).status).toBe(
      403,
    );
    const auditor = await system.token(companyId, ['auditor'], { subject: 'usr-auditor' });
    expect((await listMethods(`customerRef=${customerRef}`, { token: auditor })).status).toBe(403);
  });

  it.each([
    ['a card number', 'customerRef=4242424242424242'],
    ['free text with spaces', 'customerRef=Jane%20Doe'],
    ['no customerRef', ''],
    ['an unknown parameter', 'customerRef=acct-ok-1&name=Jane'],
  ])('refuses a listing by %s with 400', async (_label, query) => {
    expect((await listMethods(query)).status).toBe(400);
  });
});
