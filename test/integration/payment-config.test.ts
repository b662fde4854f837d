import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import { mintDevToken } from '../../devtools/tokens';
import { createCompany } from '../../models/companies';
import { officeRecordId } from '../../models/office.model';
import { updatePaymentSettings } from '../../models/payment-config';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

let system: InProcessSystem;
let companyId: string;
let admin: string;

// Stripe's keys carry their account: `sk_test_51` + the 16 characters after `acct_1` + the key's own part.
const SECRET = 'sk_test_51LakesideAcct0001SecretKey0001';
const OFFICE_SECRET = 'sk_test_51NorthOfficeSecret0002';
const WEBHOOK_SECRETS = ['whsec_OldSigningSecret0001', 'whsec_NewSigningSecret0002'];
const ACCOUNT = 'acct_1LakesideAcct0001';
const RIVER_SECRET = 'sk_test_51RiversideAcct001Secret0003';
const RIVER_ROLLED = 'sk_test_51RiversideAcct001Rolled0004';
const RIVER_OTHER = 'sk_test_51RiversideOther01Key00005';
const RIVER_ACCOUNT = 'acct_1RiversideAcct001';
const EAST_SECRET = 'sk_test_51EastOfficeAcct01Secret0006';
const EAST_ROLLED = 'sk_test_51EastOfficeAcct01Rolled0007';
const EAST_ACCOUNT = 'acct_1EastOfficeAcct01';
const EAST_WEBHOOK = 'whsec_EastOfficeSigning0008';
const SECRETS = [
  SECRET,
  OFFICE_SECRET,
  ...WEBHOOK_SECRETS,
  ACCOUNT,
  RIVER_SECRET,
  RIVER_ROLLED,
  RIVER_OTHER,
  RIVER_ACCOUNT,
  EAST_SECRET,
  EAST_ROLLED,
  EAST_ACCOUNT,
  EAST_WEBHOOK,
];
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
        accountId: 'acct_…0001',
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

  it('saves the account Stripe says a key belongs to; a misnamed account, a refused key or Stripe down change nothing', async () => {
    const before = (await call('GET', '/payment-config')).body;
    const tries: Array<[string, () => void, Record<string, unknown>, number, string]> = [
      [
        'a misnamed account',
        () => undefined,
        { secretKey: SECRET, accountId: 'acct_1SomeoneElsesAcct' },
        422,
        'account_mismatch',
      ],
      [
        'a key Stripe refuses',
        () =>
          system.sim.script({
            method: 'GET',
            path: '/v1/account',
            status: 401,
            body: { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } },
          }),
        { secretKey: 'sk_test_51RevokedKeyAcct001Key01' },
        422,
        'secret_key_refused',
      ],
      [
        'Stripe down',
        () => system.sim.script({ method: 'GET', path: '/v1/account', status: 503, times: 5 }),
        { secretKey: 'sk_test_51UnreachableAcct01Key01' },
        503,
        'gateway_unavailable',
      ],
    ];
    for (const [what, arrange, credentials, status, code] of tries) {
      arrange();
      const response = await call('PUT', '/payment-config', { mode: 'hybrid', credentials });
      expect({ what, status: response.status, code: response.body.error?.code }).toEqual({ what, status, code });
      system.sim.clearScripts();
    }
    expect((await call('GET', '/payment-config')).body).toEqual(before);
    expect(before.credentials.accountId).toBe('acct_…0001');
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
    // A person attests, never a service, even one granted the configuration.
    const service = await mintDevToken(system.ctx.config, {
      companyId,
      roles: ['service'],
      permissions: ['payment_config:write'],
      subject: 'svc-upstream-app',
    });
    const byService = await call(
      'POST',
      '/payment-config/attestation',
      {
        status: 'exempt_1179',
        rationale:
          'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).',
      },
      service,
    );
    expect(byService).toMatchObject({ status: 403, body: { error: { code: 'attestation_requires_user' } } });
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
    const attestation = await call('POST', '/offices/off_south/payment-config/attestation', {
      status: 'baa_signed',
      reference: 'BAA-2026-115',
      signedOn: '2026-10-01',
    });
    expect(attestation.status).toBe(409);
    expect(attestation.body.error.code).toBe('office_override_not_allowed');
  });
});

describe('hybrid mode does not lend the company’s attestation to an office’s own account', () => {
  const BAA = { status: 'baa_signed', reference: 'BAA-2026-200', signedOn: '2026-10-02' };
  const rawOffice = (officeId: string) =>
    system.ctx.rawMongo
      .db()
      .collection('offices')
      .findOne({ _id: officeRecordId(companyId, officeId) as never });
  const officeEvents = (officeId: string) =>
    system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': `${companyId}.${officeId}` }).lean();

  beforeAll(async () => {
    // A company of its own (the tests above leave theirs in company mode); `call` and `charge` follow these.
    companyId = await createCompany(system.ctx.db, { name: 'Riverside Health' });
    admin = await system.token(companyId, ['company_admin'], { subject: 'usr-river-admin' });
    const put = await call('PUT', '/payment-config', {
      mode: 'hybrid',
      credentials: { secretKey: RIVER_SECRET, accountId: RIVER_ACCOUNT, webhookSigningSecrets: WEBHOOK_SECRETS },
    });
    expect(put.status).toBe(200);
    expect((await call('POST', '/payment-config/attestation', BAA)).status).toBe(201);
  });

  it('refuses an office that sets only its own secret key (409 office_account_incomplete), writing and auditing no change', async () => {
    const response = await call('PUT', '/offices/off_x/payment-config', { credentials: { secretKey: EAST_SECRET } });
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('office_account_incomplete');
    // The account id is not missing: Stripe says which account the key belongs to.
    expect(response.body.error.details.map((d: { field: string }) => d.field)).toEqual([
      'credentials.webhookSigningSecrets',
      'attestation',
    ]);
    expect(await rawOffice('off_x')).toBeNull();
    // The read after it is audited; by then a change event would have been too.
    await call('GET', '/offices/off_x/payment-config');
    const events = await waitFor(
      () => officeEvents('off_x'),
      (found) => found.some((e) => e.action === 'payment_config.read'),
      { what: 'the office read event' },
    );
    expect(events.map((e) => e.action)).toEqual(['payment_config.read']);
    expect((await charge('off_x'))?.status).toBe('succeeded');
  });

  it.each([
    ['its key and account id only', { credentials: { secretKey: EAST_SECRET, accountId: EAST_ACCOUNT } }],
    [
      'its key, account id and signing secrets without an attestation',
      { credentials: { secretKey: EAST_SECRET, accountId: EAST_ACCOUNT, webhookSigningSecrets: [EAST_WEBHOOK] } },
    ],
    ['signing secrets only', { credentials: { webhookSigningSecrets: [EAST_WEBHOOK] } }],
    ['an attestation only', { attestation: BAA }],
  ])('refuses an office that sets %s, and changes nothing', async (_label, body) => {
    const response = await call('PUT', '/offices/off_x/payment-config', body);
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('office_account_incomplete');
    expect(await rawOffice('off_x')).toBeNull();
  });

  it('refuses an office attestation while the office uses the company’s account', async () => {
    const response = await call('POST', '/offices/off_x/payment-config/attestation', BAA);
    expect(response.status).toBe(409);
    expect(response.body.error.code).toBe('office_account_incomplete');
    expect(await rawOffice('off_x')).toBeNull();
  });

  it('takes key, account id, signing secrets and attestation in one PUT, and charges on the office’s own account', async () => {
    const put = await call('PUT', '/offices/off_east/payment-config', {
      credentials: { secretKey: EAST_SECRET, accountId: EAST_ACCOUNT, webhookSigningSecrets: [EAST_WEBHOOK] },
      attestation: { status: 'baa_signed', reference: 'BAA-EAST-1', signedOn: '2026-10-03' },
    });
    expect(put.status).toBe(200);
    expect(put.body.compliance).toMatchObject({ reference: 'BAA-EAST-1', attestedBy: 'usr-river-admin' });
    const effective = await call('GET', '/offices/off_east/payment-config/effective');
    expect(effective.body).toMatchObject({
      usable: true,
      compliance: { reference: 'BAA-EAST-1' },
      credentials: { secretKey: 'sk_test_…0006', webhookSigningSecrets: ['whsec_…0008'] },
      sources: { secretKey: 'office', accountId: 'office', webhookSigningSecrets: 'office', compliance: 'office' },
    });
    expect((await charge('off_east'))?.status).toBe('succeeded');
    const events = await waitFor(
      () => officeEvents('off_east'),
      (found) => found.some((e) => e.action === 'payment_config.attested'),
      { what: 'the office attestation event' },
    );
    expect(events.find((e) => e.action === 'payment_config.updated')?.changes).toContainEqual({
      field: 'compliance',
      before: null,
      after: 'baa_signed',
    });
  });

  it('refuses at charge time a hybrid office holding its own key without its own account (data written before the check)', async () => {
    await updatePaymentSettings(
      system.ctx.db,
      { companyId, officeId: 'off_legacy' },
      { secretKey: EAST_SECRET },
      'old',
    );
    const effective = await call('GET', '/offices/off_legacy/payment-config/effective');
    expect(effective.body).toMatchObject({ usable: false, problem: { code: 'office_account_incomplete' } });
    const calls = system.sim.requests.length;
    const payment = await charge('off_legacy');
    expect(payment).toMatchObject({ status: 'failed', failure: { code: 'office_account_incomplete' } });
    expect(system.sim.requests.length).toBe(calls);
  });

  it('keeps the office attestation for a new key of the same account, and refuses a new account without one', async () => {
    const rolled = await call('PUT', '/offices/off_east/payment-config', { credentials: { secretKey: EAST_ROLLED } });
    expect(rolled.status).toBe(200);
    expect(rolled.body.compliance).toMatchObject({ reference: 'BAA-EAST-1' });
    // An account id the key does not belong to (Stripe says which it does): refused, nothing changed.
    const misnamed = await call('PUT', '/offices/off_east/payment-config', {
      credentials: { secretKey: EAST_SECRET, accountId: 'acct_1AnotherAccount00' },
    });
    expect(misnamed).toMatchObject({ status: 422, body: { error: { code: 'account_mismatch' } } });
    const moved = await call('PUT', '/offices/off_east/payment-config', {
      credentials: { secretKey: 'sk_test_51AnotherAccount00Key0009' },
    });
    expect(moved.status).toBe(409);
    expect(moved.body.error.details.map((d: { field: string }) => d.field)).toEqual(['attestation']);
    expect((await call('GET', '/offices/off_east/payment-config')).body.credentials.secretKey).toBe('sk_test_…0007');
  });

  it('clears the company attestation when its key moves to another account, and keeps it for a new key of the same one', async () => {
    const rolled = await call('PUT', '/payment-config', { mode: 'hybrid', credentials: { secretKey: RIVER_ROLLED } });
    expect(rolled.body.compliance).toMatchObject({ reference: 'BAA-2026-200' });
    const moved = await call('PUT', '/payment-config', {
      mode: 'hybrid',
      credentials: { secretKey: RIVER_OTHER, accountId: 'acct_1RiversideOther01' },
    });
    expect(moved.status).toBe(200);
    expect(moved.body.compliance).toBeNull();
    expect((await charge())?.failure?.code).toBe('gateway_not_attested');
    const events = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, action: 'payment_config.updated' }).lean(),
      (found) => found.some((e) => e.changes?.some((c) => c.field === 'compliance' && c.after === null)),
      { what: 'the cleared attestation in the audit trail' },
    );
    expect(events.flatMap((e) => e.changes ?? [])).toContainEqual({
      field: 'compliance',
      before: 'baa_signed',
      after: null,
    });
  });

  it('office mode: an office key of another account clears the office attestation', async () => {
    expect((await call('PUT', '/payment-config', { mode: 'office' })).status).toBe(200);
    expect(
      (await call('PUT', '/offices/off_west/payment-config', { credentials: { secretKey: EAST_SECRET } })).status,
    ).toBe(200);
    expect((await call('POST', '/offices/off_west/payment-config/attestation', BAA)).status).toBe(201);
    const changed = await call('PUT', '/offices/off_west/payment-config', {
      credentials: { secretKey: 'sk_test_51WestOfficeAcct01Key0010' },
    });
    expect(changed.status).toBe(200);
    expect(changed.body.compliance).toBeNull();
    expect(changed.body.credentials.accountId).toBe('acct_…ct01');
    expect((await charge('off_west'))?.failure?.code).toBe('gateway_not_attested');
  });
});
