import { shredCompanyAudited } from '../../application/companies/company-lifecycle';
import { resolveGatewayAccess } from '../../application/gateway-access';
import { openDatabase, type Database } from '../../models';
import { createCompany, devAttestation } from '../../models/companies';
import { UntokenedWriteError } from '../../models/document-tokens';
import { SettingsCache } from '../../models/settings-cache';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

// Settings cached by one worker process must never outlive the change that altered them: each test reads through a
// cache built on its own database connections (another process, as far as the cache knows), changes the document
// through the api or the application's use case, and reads again in the next job.
let system: InProcessSystem;
let other: Database;
let companyId: string;
let admin: string;

const KEY_1 = 'sk_test_51CacheCompanyAcct01KeyOne0001';
const KEY_2 = 'sk_test_51CacheCompanyAcct01KeyTwo0002';

async function api(method: string, path: string, body?: unknown) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    method,
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

/** One job of the other process: the gateway key its charge would use, or why none. */
async function keyInJob(cache: SettingsCache, id = companyId): Promise<string> {
  return cache.inJob(async () => {
    const access = await resolveGatewayAccess(other.models, { companyId: id }, undefined, cache);
    return access.ok ? access.credentials.secretKey : access.failure.code;
  });
}

beforeAll(async () => {
  system = await startInProcessSystem('settings_cache');
  other = await openDatabase(system.ctx.config);
  companyId = await createCompany(system.ctx.db, {
    name: 'Cache Valley Clinic',
    stripeSecretKey: KEY_1,
    compliance: devAttestation('test'),
  });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-cache-admin' });
}, 60_000);

afterAll(async () => {
  await other?.close();
  await system?.close();
});

describe('the settings cache of a worker process', () => {
  it('serves a second job from memory, and the next job after a key rotation through the api gets the new key', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    expect(await keyInJob(cache)).toBe(KEY_1);
    const first = await cache.inJob(() => cache.company(companyId));
    // The same frozen record: no read of the database, and nothing a caller could change for the next job.
    expect(await cache.inJob(() => cache.company(companyId))).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);

    const rotated = await api('PUT', '/payment-config', { mode: 'company', credentials: { secretKey: KEY_2 } });
    expect(rotated.status).toBe(200);
    // A new key needs its own attestation (the api withdraws the old key's): the very next job stops there.
    expect(await keyInJob(cache)).toBe('gateway_not_attested');
    const BAA = { status: 'baa_signed', reference: 'BAA-CACHE-1', signedOn: '2026-11-02' };
    expect((await api('POST', '/payment-config/attestation', BAA)).status).toBe(201);
    expect(await keyInJob(cache)).toBe(KEY_2);
  });

  it('never keeps webhook signing secrets, only that there are some', async () => {
    const put = await api('PUT', '/payment-config', {
      mode: 'company',
      credentials: { webhookSigningSecrets: ['whsec_CacheSecret01'] },
    });
    expect(put.status).toBe(200);
    const cache = new SettingsCache(other.models, other.documentTokens);
    const company = await cache.inJob(() => cache.company(companyId));
    expect(JSON.stringify(company)).not.toContain('whsec_CacheSecret01');
    expect(company?.payment_info?.credentials.webhookSigningSecrets).toHaveLength(1);
  });

  it('stops a charge at once when the attestation is withdrawn', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    expect(await keyInJob(cache)).toBe(KEY_2);
    // The api refuses to clear an attestation; the model's write is what any writer would do.
    const { updatePaymentSettings } = await import('../../models/payment-config');
    await updatePaymentSettings(system.ctx.db, { companyId }, { compliance: null }, 'test');
    expect(await keyInJob(cache)).toBe('gateway_not_attested');
    await updatePaymentSettings(system.ctx.db, { companyId }, { compliance: devAttestation('test') }, 'test');
    expect(await keyInJob(cache)).toBe(KEY_2);
  });

  it('shows the PHI level set through the api to the very next job', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    expect((await api('PUT', '/invoice-settings', { phiLevel: 'minimal', numberPrefix: 'CVC' })).status).toBe(200);
    const before = await cache.inJob(() => cache.invoiceSettings(companyId));
    expect(before).toMatchObject({ phiLevel: 'minimal', numberPrefix: 'CVC' });
    expect(await cache.inJob(() => cache.invoiceSettings(companyId))).toBe(before);

    expect((await api('PUT', '/invoice-settings', { phiLevel: 'standard' })).status).toBe(200);
    expect(await cache.inJob(() => cache.invoiceSettings(companyId))).toMatchObject({ phiLevel: 'standard' });
  });

  it('shows billing settings set through the api to the very next job', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    // None yet: the absence is what the job sees, and what the next one sees after the change is the change.
    expect(await cache.inJob(() => cache.billingSettings(companyId))).toBeNull();
    const dunning = { retryDelaysDays: [1, 3], finalState: 'canceled' };
    const put = await api('PUT', '/billing-settings', { timeZone: 'America/Chicago', dunning });
    expect(put.status).toBe(200);
    expect(await cache.inJob(() => cache.billingSettings(companyId))).toMatchObject({ timeZone: 'America/Chicago' });
  });

  it('validates everything a job reads of a company with one MGET', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    await cache.inJob(async () => {
      await cache.company(companyId);
      await cache.invoiceSettings(companyId);
      await cache.billingSettings(companyId);
    });
    const calls: string[][] = [];
    const current = other.documentTokens.current.bind(other.documentTokens);
    const spy = jest.spyOn(other.documentTokens, 'current').mockImplementation(async (keys) => {
      calls.push([...keys]);
      return current(keys);
    });
    try {
      await cache.inJob(async () => {
        await resolveGatewayAccess(other.models, { companyId }, undefined, cache);
        await cache.invoiceSettings(companyId);
        await cache.billingSettings(companyId);
      });
    } finally {
      spy.mockRestore();
    }
    expect(calls).toHaveLength(1);
    expect(calls[0]).toHaveLength(3);
  });

  it('caches nothing after a crash between the token write and the document write, and reads stay right', async () => {
    const id = await createCompany(system.ctx.db, {
      name: 'Crash Point Clinic',
      stripeSecretKey: KEY_1,
      compliance: devAttestation('test'),
    });
    const cache = new SettingsCache(other.models, other.documentTokens);
    const cached = await cache.inJob(() => cache.company(id));
    expect(await cache.inJob(() => cache.company(id))).toBe(cached);

    // The writer set its new token in Redis, then died before its document write.
    await system.ctx.db.documentTokens.bump('company', id);
    const afterCrash = await cache.inJob(() => cache.company(id));
    expect(afterCrash).not.toBe(cached);
    expect(afterCrash?.name).toBe('Crash Point Clinic');
    // Not cached: every job reads the database, which stays right when someone else changes it meanwhile.
    expect(await cache.inJob(() => cache.company(id))).not.toBe(afterCrash);
    expect(await keyInJob(cache, id)).toBe(KEY_1);

    // The next complete write makes it cacheable again, with what it wrote.
    const { updatePaymentSettings } = await import('../../models/payment-config');
    await updatePaymentSettings(system.ctx.db, { companyId: id }, { secretKey: KEY_2 }, 'test');
    expect(await keyInJob(cache, id)).toBe(KEY_2);
    const again = await cache.inJob(() => cache.company(id));
    expect(await cache.inJob(() => cache.company(id))).toBe(again);
  });

  it('refuses a write that names no single document, so none escapes its token', async () => {
    await expect(
      system.ctx.db.models.InvoiceSettings.updateMany({ companyId }, { $set: { phiLevel: 'minimal' } }),
    ).rejects.toBeInstanceOf(UntokenedWriteError);
    expect(await system.ctx.db.models.InvoiceSettings.findById(`company|${companyId}`).lean()).toMatchObject({
      phiLevel: 'standard',
    });
  });

  it("as the api's cache, keeps signing secrets, and the next read after a rotation through the api gets the new ones", async () => {
    const secrets = async (cache: SettingsCache) =>
      (await cache.inJob(() => cache.company(companyId)))?.payment_info?.credentials?.webhookSigningSecrets;
    const cache = new SettingsCache(other.models, other.documentTokens, { keepWebhookSigningSecrets: true });
    expect(await secrets(cache)).toEqual(['whsec_CacheSecret01']);
    const first = await cache.inJob(() => cache.company(companyId));
    expect(await cache.inJob(() => cache.company(companyId))).toBe(first);

    const put = await api('PUT', '/payment-config', {
      mode: 'company',
      credentials: { webhookSigningSecrets: ['whsec_CacheSecret02', 'whsec_CacheSecret03'] },
    });
    expect(put.status).toBe(200);
    expect(await secrets(cache)).toEqual(['whsec_CacheSecret02', 'whsec_CacheSecret03']);
  });

  it('keeps a payer reference once found (Customer records never change), and asks again while there is none', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    const found = jest.fn(async () => 'payer-ref-1');
    const missing = jest.fn(async () => undefined);
    expect(await cache.payerReference(companyId, 'cus_A', found)).toBe('payer-ref-1');
    expect(await cache.payerReference(companyId, 'cus_A', found)).toBe('payer-ref-1');
    expect(found).toHaveBeenCalledTimes(1);
    expect(await cache.payerReference(companyId, 'cus_B', missing)).toBeUndefined();
    expect(await cache.payerReference(companyId, 'cus_B', missing)).toBeUndefined();
    expect(missing).toHaveBeenCalledTimes(2);
  });

  it('keeps at most its configured number of entries', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens, { maxEntries: 3 });
    const ids = await Promise.all(
      [1, 2, 3, 4, 5].map((n) => createCompany(system.ctx.db, { name: `Bounded Clinic ${n}` })),
    );
    for (const id of ids) await cache.inJob(() => cache.company(id));
    expect(cache.size).toBe(3);
    // The most recent are kept: the last one is still served from memory.
    const last = await cache.inJob(() => cache.company(ids[4]!));
    expect(await cache.inJob(() => cache.company(ids[4]!))).toBe(last);
  });

  it('answers the next job with the shredded mark once the company is shredded through its use case', async () => {
    const cache = new SettingsCache(other.models, other.documentTokens);
    expect(await keyInJob(cache)).toBe(KEY_2);
    expect((await cache.inJob(() => cache.company(companyId)))?.shreddedAt).toBeUndefined();
    expect(await cache.certainlyNotShredded(companyId)).toBe(true);
    const shredded = await shredCompanyAudited(
      { db: system.ctx.db, enqueueAudit: (event) => enqueueAuditEvent(system.ctx.queues.audit, event) },
      companyId,
      { type: 'user', id: 'usr-cache-admin' },
    );
    expect(shredded.outcome).toBe('shredded');
    // Asked now, not as of the job's validation: a render finishing after the shredding stores nothing.
    expect(await cache.certainlyNotShredded(companyId)).toBe(false);
    expect(await keyInJob(cache)).toBe('data_shredded');
    expect((await cache.inJob(() => cache.company(companyId)))?.shreddedAt).toBeInstanceOf(Date);
  });
});
