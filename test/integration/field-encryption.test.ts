import { Binary } from 'mongodb';
import { createCompany } from '../../models/companies';
import { companyKeyAltName } from '../../models/encryption';
import { createTestContext, type TestContext } from '../support/harness';

let ctx: TestContext;
beforeAll(async () => {
  ctx = await createTestContext('encryption');
});
afterAll(async () => ctx.close());

describe('payment secrets are encrypted client-side', () => {
  it('stores the Stripe secret key as ciphertext (BSON binary subtype 6) and the model reads it back in clear', async () => {
    const secret = 'sk_test_51EncryptedAtRest4242';
    const id = await createCompany(ctx.db, { name: 'Lakeside Pediatrics', stripeSecretKey: secret });

    const raw = await ctx.rawMongo
      .db()
      .collection('companies')
      .findOne({ _id: id as never });
    const stored = raw?.payment_info?.credentials?.secretKey;
    expect(stored).toBeInstanceOf(Binary);
    expect((stored as Binary).sub_type).toBe(6);
    expect(Buffer.from((stored as Binary).buffer).toString('latin1')).not.toContain(secret);
    expect(JSON.stringify(raw)).not.toContain(secret);

    const company = await ctx.db.models.Company.findById(id).lean();
    expect(company?.payment_info?.credentials.secretKey).toBe(secret);
  });

  it('uses one data key per company, named company-<id>, and the same key for that company every time', async () => {
    const a = await createCompany(ctx.db, { name: 'A', stripeSecretKey: 'sk_test_a' });
    const b = await createCompany(ctx.db, { name: 'B', stripeSecretKey: 'sk_test_b' });
    const [dbName, collection] = ctx.config.keyVaultNamespace.split('.') as [string, string];
    const keys = await ctx.rawMongo.db(dbName).collection(collection).find({}).toArray();
    const names = keys.flatMap((k) => k.keyAltNames as string[]);
    expect(names).toEqual(expect.arrayContaining([companyKeyAltName(a), companyKeyAltName(b)]));
    expect(names.filter((n) => n === companyKeyAltName(a))).toHaveLength(1);

    const rawA = await ctx.rawMongo
      .db()
      .collection('companies')
      .findOne({ _id: a as never });
    const rawB = await ctx.rawMongo
      .db()
      .collection('companies')
      .findOne({ _id: b as never });
    const keyIdOf = (bin: Binary) => Buffer.from(bin.buffer).subarray(1, 17).toString('hex');
    const keyA = keys.find((k) => (k.keyAltNames as string[]).includes(companyKeyAltName(a)));
    expect(keyIdOf(rawA?.payment_info.credentials.secretKey)).toBe(
      Buffer.from((keyA?._id as unknown as Binary).buffer).toString('hex'),
    );
    expect(keyIdOf(rawA?.payment_info.credentials.secretKey)).not.toBe(
      keyIdOf(rawB?.payment_info.credentials.secretKey),
    );
  });

  it('creates a company key once even when many processes ask for it at the same moment', async () => {
    const companyId = 'co_concurrent_key';
    await Promise.all(Array.from({ length: 8 }, () => ctx.db.encryption.ensureCompanyKey(companyId)));
    const [dbName, collection] = ctx.config.keyVaultNamespace.split('.') as [string, string];
    const count = await ctx.rawMongo
      .db(dbName)
      .collection(collection)
      .countDocuments({ keyAltNames: companyKeyAltName(companyId) });
    expect(count).toBe(1);
  });
});
