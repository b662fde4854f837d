import { execFile } from 'node:child_process';
import nodeCrypto from 'node:crypto';
import { promisify } from 'node:util';
import { Binary } from 'mongodb';
import { createCompany } from '../../models/companies';
import { ALGORITHMS, companyKeyAltName, localMasterKeyFor } from '../../models/encryption';
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

/**
 * A process on the driver's defaults, as a deploy from before this change, or a plain tool: libmongocrypt calls back
 * into JavaScript for its crypto. It encrypts its input under a key alt name, or decrypts it (base64 either way).
 */
const DRIVER_DEFAULTS_PROCESS = `
const { MongoClient, ClientEncryption, Binary } = require('mongodb');
const [mode, altName, input] = process.argv.slice(1);
(async () => {
  const kmsProviders = { local: { key: Buffer.from(process.env.LOCAL_KEY_HEX, 'hex') } };
  const client = await MongoClient.connect(process.env.MONGODB_URI);
  const encryption = new ClientEncryption(client, { keyVaultNamespace: process.env.KEY_VAULT_NAMESPACE, kmsProviders });
  const crypt = require('mongodb-client-encryption').MongoCrypt.name;
  const output = mode === 'encrypt'
    ? Buffer.from((await encryption.encrypt(input, { keyAltName: altName, algorithm: '${ALGORITHMS.random}' })).buffer).toString('base64')
    : await encryption.decrypt(new Binary(Buffer.from(input, 'base64'), 6));
  process.stdout.write(JSON.stringify({ crypt, output }));
  await client.close();
})().catch((error) => { console.error(error); process.exit(1); });
`;

describe("field encryption's crypto is libmongocrypt's own (OpenSSL), readable both ways", () => {
  async function onDriverDefaults(mode: 'encrypt' | 'decrypt', altName: string, input: string) {
    const localKey = localMasterKeyFor(ctx.config.kms, false);
    if (!localKey) throw new Error('the test context uses the local KMS');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['-e', DRIVER_DEFAULTS_PROCESS, mode, altName, input],
      {
        cwd: process.cwd(),
        env: {
          ...process.env,
          MONGODB_URI: ctx.config.mongodbUri,
          KEY_VAULT_NAMESPACE: ctx.config.keyVaultNamespace,
          LOCAL_KEY_HEX: localKey.toString('hex'),
        },
      },
    );
    return JSON.parse(stdout) as { crypt: string; output: string };
  }

  it('runs on the OpenSSL libmongocrypt was built with here, not on JavaScript callbacks', async () => {
    expect(ctx.db.encryption.cryptoProvider).toBe('libmongocrypt');
    // The driver's callbacks make a Node.js Cipher or Hmac per primitive: an encrypt and a decrypting read make none.
    const ciphers = jest.spyOn(nodeCrypto, 'createCipheriv');
    const hmacs = jest.spyOn(nodeCrypto, 'createHmac');
    try {
      const companyId = await createCompany(ctx.db, { name: 'Bayview Clinic', stripeSecretKey: 'sk_test_bayview' });
      const company = await ctx.db.models.Company.findById(companyId).lean();
      expect(company?.payment_info?.credentials.secretKey).toBe('sk_test_bayview');
      expect(ciphers).not.toHaveBeenCalled();
      expect(hmacs).not.toHaveBeenCalled();
    } finally {
      ciphers.mockRestore();
      hmacs.mockRestore();
    }
  });

  it("reads a secret written with the driver's JavaScript crypto, and writes one that process reads", async () => {
    const companyId = await createCompany(ctx.db, { name: 'Harbor Dental', stripeSecretKey: 'sk_test_harbor' });
    const altName = companyKeyAltName(companyId);

    // Written before the change (the driver's defaults), read here: the model decrypts it as it reads.
    const older = await onDriverDefaults('encrypt', altName, 'sk_test_writtenByAnOlderDeploy');
    expect(older.crypt).toBe('MongoCrypt');
    await ctx.rawMongo
      .db()
      .collection('companies')
      .updateOne(
        { _id: companyId as never },
        { $set: { 'payment_info.credentials.secretKey': new Binary(Buffer.from(older.output, 'base64'), 6) } },
      );
    const company = await ctx.db.models.Company.findById(companyId).lean();
    expect(company?.payment_info?.credentials.secretKey).toBe('sk_test_writtenByAnOlderDeploy');

    // Written here, read by a process on the driver's defaults (one still running mid-deploy, or a tool).
    const sealed = await ctx.db.encryption.encrypt(companyId, 'sk_test_writtenHere');
    const read = await onDriverDefaults('decrypt', altName, Buffer.from(sealed.buffer).toString('base64'));
    expect(read.output).toBe('sk_test_writtenHere');
  });
});
