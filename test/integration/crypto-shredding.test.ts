import { ulid } from 'ulid';
import { startApi, type RunningApi } from '../../api/main';
import { mintDevToken } from '../../devtools/tokens';
import { openDatabase, type Database } from '../../models';
import { createCompany, devAttestation } from '../../models/companies';
import { companyKeyAltName, isShreddedDataError } from '../../models/encryption';
import { startWorkers, type RunningWorkers } from '../../workers/main';
import { loadAnchorSigner } from '../../models/anchor-key';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { assertBuildIsCurrent } from '../support/processes';
import { cli } from '../support/cli';

let system: InProcessSystem;
let shredded: string;
let kept: string;
// A fresh database connection, api and workers: libmongocrypt caches keys for a minute per client.
let fresh: { db: Database; api: RunningApi; workers: RunningWorkers };

async function keyExists(companyId: string) {
  const [dbName, collection] = system.ctx.config.keyVaultNamespace.split('.') as [string, string];
  return (
    (await system.ctx.rawMongo
      .db(dbName)
      .collection(collection)
      .countDocuments({ keyAltNames: companyKeyAltName(companyId) })) > 0
  );
}

async function api(companyId: string, method: string, path: string, body?: unknown, url = fresh.api.url) {
  const token = await mintDevToken(system.ctx.config, { companyId, roles: ['company_admin'] });
  const response = await fetch(`${url}/v1/companies/${companyId}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'idempotency-key': `shred-${ulid()}`,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as any };
}

beforeAll(async () => {
  assertBuildIsCurrent();
  system = await startInProcessSystem('shredding');
  shredded = await createCompany(system.ctx.db, {
    name: 'Closing Clinic',
    stripeSecretKey: 'sk_test_closingClinic01',
    compliance: devAttestation('test'),
  });
  kept = await createCompany(system.ctx.db, {
    name: 'Staying Clinic',
    stripeSecretKey: 'sk_test_stayingClinic01',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  if (fresh) {
    await fresh.api.stop();
    await fresh.workers.stop();
    await fresh.db.close();
  }
  await system.close();
});

it('refuses to shred without the typed confirmation, and changes nothing', async () => {
  const result = await cli(['company', 'shred', shredded, '--confirm', 'co_something_else'], system.ctx.env);
  expect(result.code).toBe(1);
  expect(result.out).toContain('confirmation did not match; nothing was changed');
  expect(await keyExists(shredded)).toBe(true);
});

const PAYMENT = { amount: 500, currency: 'usd', customer: 'cus_S1', paymentMethod: 'pm_card_visa' };

it('destroys exactly that company’s data key, and audits it', async () => {
  // The running api has the company in its settings cache: the shredding (another process) still stops its next POST.
  expect((await api(shredded, 'POST', '/payments', PAYMENT, system.url)).status).toBe(202);
  const result = await cli(['company', 'shred', shredded, '--confirm', shredded], system.ctx.env);
  expect(result).toMatchObject({ code: 0 });
  const refused = await api(shredded, 'POST', '/payments', PAYMENT, system.url);
  expect(refused.status).toBe(410);
  expect(refused.body.error.code).toBe('company_shredded');
  expect(result.out).toContain('data key destroyed');
  expect(await keyExists(shredded)).toBe(false);
  expect(await keyExists(kept)).toBe(true);
  const event = await waitFor(
    () => system.ctx.db.models.AuditEvent.findOne({ companyId: shredded, action: 'company.shredded' }).lean(),
    (e) => e !== null,
    { what: 'company.shredded event' },
  );
  expect(event).toMatchObject({
    severity: 'high',
    changes: [{ field: 'dataKey', before: 'present', after: 'destroyed' }],
  });
  // The chain still verifies: integrity needs no decryption keys.
  const signer = loadAnchorSigner(system.ctx.config.audit.anchorKeyFile, false);
  expect((await system.ctx.db.auditTrail.verify(shredded, signer.publicKey)).ok).toBe(true);
});

it('company create is audited with what was set, the secret key masked; the same setup again records nothing new', async () => {
  const args = ['company', 'create', '--name', 'Audited Clinic', '--id', 'co_audited_create'];
  const secret = ['--stripe-secret-key', 'sk_test_auditedCreate9876', '--attest-exempt-1179', 'payments only'];
  expect(await cli([...args, ...secret], system.ctx.env)).toMatchObject({ code: 0, out: 'co_audited_create\n' });
  expect(await cli([...args, ...secret], system.ctx.env)).toMatchObject({ code: 0 });
  const events = await waitFor(
    () => system.ctx.db.models.AuditEvent.find({ companyId: 'co_audited_create', action: 'company.created' }).lean(),
    (found) => found.length > 0,
    { what: 'company.created event' },
  );
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({
    actor: { type: 'user' },
    resource: { type: 'company', id: 'co_audited_create' },
    changes: expect.arrayContaining([
      { field: 'secretKey', before: null, after: 'sk_test_…9876' },
      { field: 'compliance.status', before: null, after: 'exempt_1179' },
    ]),
  });
  expect(JSON.stringify(events)).not.toContain('sk_test_auditedCreate9876');
});

describe('after shredding (a new process, no cached keys)', () => {
  beforeAll(async () => {
    const config = configWith(system.ctx, { PORT: '0' });
    const db = await openDatabase(config);
    fresh = {
      db,
      workers: await startWorkers(config, system.ctx.logger, db),
      api: await startApi(config, system.ctx.logger, db),
    };
  });

  it('reads of the shredded company’s encrypted fields fail with data_shredded, not a crash', async () => {
    const error = await fresh.db.models.Company.findById(shredded)
      .lean()
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(isShreddedDataError(error)).toBe(true);
    const config = await api(shredded, 'GET', '/payment-config');
    expect(config.status).toBe(410);
    expect(config.body.error.code).toBe('data_shredded');
    const payment = await api(shredded, 'POST', '/payments', PAYMENT);
    expect(payment.status).toBe(410);
    expect(payment.body.error.code).toBe('company_shredded');
  });

  it('leaves every other company intact', async () => {
    const company = await fresh.db.models.Company.findById(kept).lean();
    expect(company?.payment_info?.credentials.secretKey).toBe('sk_test_stayingClinic01');
    const config = await api(kept, 'GET', '/payment-config');
    expect(config.body.credentials.secretKey).toBe('sk_test_…ic01');
    const payment = await api(kept, 'POST', '/payments', {
      amount: 500,
      currency: 'usd',
      customer: 'cus_K1',
      paymentMethod: 'pm_card_visa',
    });
    const settled = await waitFor(
      () => fresh.db.models.Payment.findById(payment.body.id).lean(),
      (p) => p?.status === 'succeeded' || p?.status === 'failed',
      { what: 'payment of the kept company' },
    );
    expect(settled?.status).toBe('succeeded');
  });
});
