import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

let system: InProcessSystem;
let companyId: string;
let admin: string;

const SECRET = 'sk_test_51LakesideSecretKey0001';
const OFFICE_SECRET = 'sk_test_51NorthOfficeSecret0002';
const WEBHOOK_SECRETS = ['whsec_OldSigningSecret0001', 'whsec_NewSigningSecret0002'];
const ACCOUNT = 'acct_1LakesideAcct01';
const SECRETS = [SECRET, OFFICE_SECRET, ...WEBHOOK_SECRETS, ACCOUNT];
const responses: string[] = [];

async function call(method: string, path: string, body?: unknown, token = admin) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  responses.push(text);
  return { status: response.status, body: JSON.parse(text) };
}

async function rawCompany() {
  return system.ctx.rawMongo
    .db()
    .collection('companies')
    .findOne({ _id: companyId as never });
}

async function charge(officeId?: string) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${admin}`,
      'content-type': 'application/json',
      'idempotency-key': `cfg-${ulid()}`,
    },
    body: JSON.stringify({
      amount: 700,
      currency: 'usd',
      customer: 'cus_Cfg01',
      paymentMethod: 'pm_card_visa',
      ...(officeId ? { officeId } : {}),
    }),
  });
  const { id } = (await response.json()) as { id: string };
  return waitFor(
    () => system.ctx.db.models.Payment.findById(id).lean(),
    (p) => p?.status === 'succeeded' || p?.status === 'failed',
    { what: 'payment to settle' },
  );
}

beforeAll(async () => {
  system = await startInProcessSystem('payment_config');
  companyId = await createCompany(system.ctx.db, { name: 'Lakeside Health' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
});

afterAll(async () => {
  // No secret ever left the api in a response or a log line.
  for (const secret of SECRETS) {
    expect(responses.join('\n')).not.toContain(secret);
    expect(system.ctx.logs.text).not.toContain(secret);
  }
  await system.close();
});

describe('company payment configuration', () => {
  it('stores secrets encrypted and shows them masked, write-only', async () => {
    const put = await call('PUT', '/payment-config', {
      mode: 'hybrid',
      credentials: {
        secretKey: SECRET,
        publishableKey: 'pk_test_51LakesidePublic01',
        webhookSigningSecrets: WEBHOOK_SECRETS,
        accountId: ACCOUNT,
      },
      statementDescriptor: 'LAKESIDE HEALTH',
      defaultCurrency: 'USD',
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({
      mode: 'hybrid',
      credentials: {
        secretKey: 'sk_test_…0001',
        publishableKey: 'pk_test_51LakesidePublic01',
        webhookSigningSecrets: ['whsec_…0001', 'whsec_…0002'],
        accountId: 'acct_…ct01',
      },
      defaultCurrency: 'usd',
      compliance: null,
    });
    const raw = await rawCompany();
    const credentials = raw?.payment_info.credentials;
    for (const value of [credentials.secretKey, credentials.accountId, ...credentials.webhookSigningSecrets]) {
      expect(value).toBeInstanceOf(Binary);
      expect((value as Binary).sub_type).toBe(6);
    }
    expect(JSON.stringify(raw)).not.toContain('LakesideSecretKey');
    // Deterministic for the account id (looked up by equality), random for secrets.
    const again = await system.ctx.db.encryption.encrypt(companyId, ACCOUNT, 'deterministic');
    expect(Buffer.from(again.buffer).equals(Buffer.from((credentials.accountId as Binary).buffer))).toBe(true);

    const get = await call('GET', '/payment-config');
    expect(get.body.credentials.secretKey).toBe('sk_test_…0001');
  });

  it('keeps secrets when a later update leaves them out, and removes them with null', async () => {
    await call('PUT', '/payment-config', { mode: 'hybrid', statementDescriptor: 'LAKESIDE CARE' });
    const company = await system.ctx.db.models.Company.findById(companyId).lean();
    expect(company?.payment_info?.credentials.secretKey).toBe(SECRET);
    expect(company?.payment_info?.statementDescriptor).toBe('LAKESIDE CARE');
  });

  it.each([
    ['an unknown mode', { mode: 'regional' }, 'mode'],
    [
      'a publishable key where the secret key belongs',
      { mode: 'company', credentials: { secretKey: 'pk_test_51Oops000000' } },
      'credentials.secretKey',
    ],
    ['a malformed secret key', { mode: 'company', credentials: { secretKey: 'sk_nope' } }, 'credentials.secretKey'],
    [
      'a live key outside production',
      { mode: 'company', credentials: { secretKey: 'sk_live_51RealMoney0000' } },
      'credentials.secretKey',
    ],
    [
      'three webhook secrets',
      {
        mode: 'company',
        credentials: { webhookSigningSecrets: ['whsec_a1234567', 'whsec_b1234567', 'whsec_c1234567'] },
      },
      'credentials.webhookSigningSecrets',
    ],
    ['a bad statement descriptor', { mode: 'company', statementDescriptor: '<script>' }, 'statementDescriptor'],
    [
      'removing the key in company mode',
      { mode: 'company', credentials: { secretKey: null } },
      'credentials.secretKey',
    ],
    ['an unknown field', { mode: 'company', merchantNotes: 'x' }, 'merchantNotes'],
  ])('refuses %s with 400 naming %s, and changes nothing', async (_label, body, field) => {
    const before = await rawCompany();
    const response = await call('PUT', '/payment-config', body);
    expect(response.status).toBe(400);
    expect(response.body.error.details.map((d: { field: string }) => d.field)).toEqual([field]);
    expect(await rawCompany()).toEqual(before);
  });

  it('audits every change with masked before/after values', async () => {
    const event = await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.findOne({ companyId, action: 'payment_config.updated' })
          .sort({ sequence: 1 })
          .lean(),
      (e) => e !== null,
      { what: 'payment_config.updated event' },
    );
    expect(event?.changes).toEqual(
      expect.arrayContaining([
        { field: 'mode', before: null, after: 'hybrid' },
        { field: 'secretKey', before: null, after: 'sk_test_…0001' },
        { field: 'webhookSigningSecrets', before: null, after: 'whsec_…0001,whsec_…0002' },
      ]),
    );
    expect(JSON.stringify(event)).not.toContain(SECRET);
  });

  it('is not readable by auditors or clerks', async () => {
    const auditor = await system.token(companyId, ['auditor']);
    expect((await call('GET', '/payment-config', undefined, auditor)).status).toBe(403);
    const clerk = await system.token(companyId, ['billing_clerk'], { officeIds: ['off_north'] });
    expect((await call('GET', '/offices/off_north/payment-config', undefined, clerk)).status).toBe(403);
  });
});

describe('attestation gates payments', () => {
  it('refuses to charge without a BAA or 1179 attestation, before any gateway call', async () => {
    const calls = system.sim.requests.length;
    const payment = await charge();
    expect(payment?.status).toBe('failed');
    expect(payment?.failure?.code).toBe('gateway_not_attested');
    expect(system.sim.requests.length).toBe(calls);
  });

  it('records an attestation (who, when), and then charges', async () => {
    const short = await call('POST', '/payment-config/attestation', { status: 'exempt_1179', rationale: 'payments' });
    expect(short.status).toBe(400);
    const response = await call('POST', '/payment-config/attestation', {
      status: 'exempt_1179',
      rationale: 'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).',
    });
    expect(response.status).toBe(201);
    expect(response.body.compliance).toMatchObject({ status: 'exempt_1179', attestedBy: 'usr-admin' });
    expect((await charge())?.status).toBe('succeeded');
  });
});

describe('offices', () => {
  it('hybrid: an office overrides field by field, and the effective view says where each came from', async () => {
    const put = await call('PUT', '/offices/off_north/payment-config', { statementDescriptor: 'LAKESIDE NORTH' });
    expect(put.status).toBe(200);
    const effective = await call('GET', '/offices/off_north/payment-config/effective');
    expect(effective.body).toMatchObject({
      mode: 'hybrid',
      usable: true,
      statementDescriptor: 'LAKESIDE NORTH',
      credentials: { secretKey: 'sk_test_…0001' },
      sources: { statementDescriptor: 'office', secretKey: 'company', compliance: 'company' },
    });
  });

  it('office mode: an office without its own key cannot take payments, and says which office', async () => {
    expect((await call('PUT', '/payment-config', { mode: 'office' })).status).toBe(200);
    const effective = await call('GET', '/offices/off_north/payment-config/effective');
    expect(effective.body).toMatchObject({ usable: false, problem: { code: 'office_payment_config_missing' } });
    expect(effective.body.problem.message).toContain('off_north');
    const payment = await charge('off_north');
    expect(payment?.failure?.code).toBe('office_payment_config_missing');

    expect((await call('PUT', '/offices/off_north/payment-config', {})).status).toBe(400);
    expect(
      (await call('PUT', '/offices/off_north/payment-config', { credentials: { secretKey: OFFICE_SECRET } })).status,
    ).toBe(200);
    expect((await charge('off_north'))?.failure?.code).toBe('gateway_not_attested');
    await call('POST', '/offices/off_north/payment-config/attestation', {
      status: 'baa_signed',
      reference: 'BAA-2026-114',
      signedOn: '2026-10-01',
    });
    const paid = await charge('off_north');
    expect(paid?.status).toBe('succeeded');
    const create = system.sim.requests.find((r) => r.idempotencyKey === paid!._id);
    expect(create).toBeDefined();
  });

  it('audits office configuration reads and changes too', async () => {
    const events = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': `${companyId}.off_north` }).lean(),
      (found) =>
        found.some((e) => e.action === 'payment_config.updated') &&
        found.some((e) => e.action === 'payment_config.attested'),
      { what: 'office payment_config events' },
    );
    const updated = events.find(
      (e) => e.action === 'payment_config.updated' && e.changes?.some((c) => c.field === 'secretKey'),
    );
    expect(updated?.changes).toContainEqual({ field: 'secretKey', before: null, after: 'sk_test_…0002' });
    expect(system.ctx.logs.text).not.toContain('could not enqueue audit event');
  });

  it('company mode: offices may not override', async () => {
    await call('PUT', '/payment-config', { mode: 'company' });
    const response = await call('PUT', '/offices/off_south/payment-config', { statementDescriptor: 'LAKESIDE SOUTH' });
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('office_override_not_allowed');
  });
});
