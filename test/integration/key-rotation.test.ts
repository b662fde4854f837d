import type { Document } from 'mongodb';
import { ulid } from 'ulid';
import { startApi, type RunningApi } from '../../api/main';
import { deleteKeysByPrefix } from '../../devtools/redis-keys';
import { mintDevToken } from '../../devtools/tokens';
import { PLATFORM_AUDIT_SCOPE } from '../../domain/audit-actions';
import { openDatabase, type Database } from '../../models';
import { createCompany, devAttestation } from '../../models/companies';
import { rotateMasterKey } from '../../application/keys/rotate-master-key';
import { ConfigError, loadConfig } from '../../platform/config';
import { closeQueues, createQueues } from '../../queues';
import { startWorkers, type RunningWorkers } from '../../workers/main';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { findLocalKms, startLocalKms, type LocalKms } from '../support/local-kms';
import { assertBuildIsCurrent } from '../support/processes';
import { cli } from '../support/cli';

describe('configuration of a KMS endpoint', () => {
  const aws = { KMS_PROVIDER: 'aws', AWS_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:1:key/x', AWS_KMS_REGION: 'us-east-1' };

  const problemsOf = (env: Record<string, string>): string[] => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error.problems;
      throw error;
    }
    return [];
  };

  it('refuses an endpoint given as a URL, and a CA file that cannot be read, naming each', () => {
    expect(problemsOf({ ...aws, AWS_KMS_ENDPOINT: 'https://kms.example:443' })).toEqual([
      'AWS_KMS_ENDPOINT: must be host or host:port, without a scheme',
    ]);
    expect(problemsOf({ ...aws, AWS_KMS_ENDPOINT: 'kms.example:443', KMS_TLS_CA_FILE: '/nonexistent/ca.pem' })).toEqual(
      ['KMS_TLS_CA_FILE: cannot read /nonexistent/ca.pem'],
    );
  });

  it('keeps an explicitly configured local master key only for unwrapping once a KMS is the provider', () => {
    const config = loadConfig({ ...aws, AWS_KMS_ENDPOINT: 'kms.internal:4443', LOCAL_MASTER_KEY_FILE: '/keys/old' });
    expect(config.kms).toMatchObject({ provider: 'aws', endpoint: 'kms.internal:4443' });
    expect(config.kms.unwrapOnly).toEqual({ localKeyFile: '/keys/old' });
    expect(loadConfig(aws).kms.unwrapOnly).toEqual({});
  });
});

const binary = findLocalKms();
const describeWithKms = binary ? describe : describe.skip;

describeWithKms('master-key rotation (keys rotate) against a real AWS KMS API (local-kms)', () => {
  let system: InProcessSystem;
  let kms: LocalKms;
  let cmkA: string;
  let cmkB: string;
  const companies: Array<{ id: string; secretKey: string }> = [];
  const opened: Array<{ db: Database; api?: RunningApi; workers?: RunningWorkers; queuePrefix?: string }> = [];

  /** Environment that makes CMK `arn` (served by local-kms over TLS) the master key. */
  const awsEnv = (arn: string, overrides: Record<string, string> = {}): Record<string, string> => ({
    KMS_PROVIDER: 'aws',
    AWS_KMS_KEY_ARN: arn,
    AWS_KMS_REGION: kms.region,
    AWS_KMS_ENDPOINT: kms.endpoint,
    KMS_TLS_CA_FILE: kms.caFile,
    AWS_ACCESS_KEY_ID: 'AKIALOCALKMSTEST',
    AWS_SECRET_ACCESS_KEY: 'local-kms-does-not-check-signatures',
    ...overrides,
  });

  async function vaultKeys(): Promise<Document[]> {
    const [dbName, collection] = system.ctx.config.keyVaultNamespace.split('.') as [string, string];
    return system.ctx.rawMongo.db(dbName).collection(collection).find({}).sort({ _id: 1 }).toArray();
  }

  /** A new process's view: its own connection, so no data key is in libmongocrypt's cache. */
  async function freshDatabase(env: Record<string, string>): Promise<Database> {
    const db = await openDatabase(configWith(system.ctx, env));
    opened.push({ db });
    return db;
  }

  async function secretKeysSeenBy(db: Database): Promise<Record<string, string | undefined>> {
    const seen: Record<string, string | undefined> = {};
    for (const { id } of companies) {
      const company = await db.models.Company.findById(id).lean();
      seen[id] = company?.payment_info?.credentials.secretKey as string | undefined;
    }
    return seen;
  }

  const expectedSecretKeys = () => Object.fromEntries(companies.map(({ id, secretKey }) => [id, secretKey]));

  beforeAll(async () => {
    assertBuildIsCurrent();
    kms = await startLocalKms(binary!, 2);
    [cmkA = '', cmkB = ''] = kms.keyArns;
    system = await startInProcessSystem('keyrotation');
    for (const name of ['North', 'South', 'East']) {
      const secretKey = `sk_test_rotation${name}Clinic01`;
      const id = await createCompany(system.ctx.db, {
        name: `${name} Clinic`,
        stripeSecretKey: secretKey,
        compliance: devAttestation('test'),
      });
      companies.push({ id, secretKey });
    }
  });

  afterAll(async () => {
    for (const { db, api, workers, queuePrefix } of opened.reverse()) {
      await api?.stop();
      await workers?.stop();
      await db.close();
      if (queuePrefix) await deleteKeysByPrefix(system.ctx.redis, queuePrefix);
    }
    await system?.close();
    await kms?.close();
  });

  it('refuses local → local with the reason and what to do instead, and leaves the key vault unchanged', async () => {
    const before = await vaultKeys();
    expect(before.length).toBeGreaterThanOrEqual(companies.length);
    expect(before.every((key) => key.masterKey.provider === 'local')).toBe(true);

    const result = await cli(['keys', 'rotate'], system.ctx.env);

    expect(result.code).toBe(1);
    expect(result.out).toContain('KMS_PROVIDER=local cannot be the target of a rotation, so nothing was changed');
    expect(result.out).toContain('no named KMS providers');
    expect(result.out).toContain('Rotate into a KMS instead');
    expect(await vaultKeys()).toEqual(before);
  });

  it('names the missing credentials when the local master key is no longer configured, and changes nothing', async () => {
    const before = await vaultKeys();
    const config = configWith(system.ctx, awsEnv(cmkA, { LOCAL_MASTER_KEY_FILE: '' }));
    const queues = createQueues(system.ctx.redis, config.queuePrefix);
    const report = await rotateMasterKey(
      { client: system.ctx.rawMongo, kms: config.kms, keyVaultNamespace: config.keyVaultNamespace, queues },
      { runId: `rot_${ulid()}`, actor: { type: 'user', id: 'test-operator' } },
    ).finally(() => closeQueues(queues));
    expect(report).toMatchObject({ rewrapped: 0, total: before.length, verified: 0 });
    expect(report.unverified.map((key) => key.problem)).toEqual(
      before.map(
        () =>
          'not re-wrapped: wrapped by local, whose credentials are not configured; ' +
          'keep LOCAL_MASTER_KEY_FILE set until the rotation verifies',
      ),
    );
    expect(await vaultKeys()).toEqual(before);
  });

  describe('local → AWS KMS (CMK A), by the CLI', () => {
    let before: Document[];
    let output: string;

    beforeAll(async () => {
      before = await vaultKeys();
      // LOCAL_MASTER_KEY_FILE stays set (the harness sets it): it unwraps the keys being moved.
      const result = await cli(['keys', 'rotate'], { ...system.ctx.env, ...awsEnv(cmkA) });
      expect(result).toMatchObject({ code: 0 });
      output = result.out;
    });

    it('re-wraps every data key under the CMK, and says so', async () => {
      const n = before.length;
      expect(output).toContain(`rewrapped: ${n} (${n} from local); already under the master key: 0`);
      expect(output).toContain(`verified: ${n}/${n}`);
      const after = await vaultKeys();
      expect(after.map((key) => key._id)).toEqual(before.map((key) => key._id));
      for (const [i, key] of after.entries()) {
        expect(key.masterKey).toEqual({ provider: 'aws', region: kms.region, key: cmkA, endpoint: kms.endpoint });
        expect(key.keyMaterial.buffer).not.toEqual(before[i]!.keyMaterial.buffer);
      }
    });

    it('keeps every company readable with the AWS master key alone, and charges go through', async () => {
      // Queues of its own: the first system's workers, still on the local-only configuration, must not take its jobs.
      const config = configWith(
        system.ctx,
        awsEnv(cmkA, { LOCAL_MASTER_KEY_FILE: '', PORT: '0', QUEUE_PREFIX: `{hbt-rotated-${ulid().toLowerCase()}}` }),
      );
      expect(config.kms.unwrapOnly).toEqual({});
      const db = await openDatabase(config);
      const workers = await startWorkers(config, system.ctx.logger, db);
      const api = await startApi(config, system.ctx.logger, db);
      opened.push({ db, workers, api, queuePrefix: config.queuePrefix });

      expect(await secretKeysSeenBy(db)).toEqual(expectedSecretKeys());

      const payer = companies[0]!.id;
      const token = await mintDevToken(config, { companyId: payer, roles: ['service'] });
      const response = await fetch(`${api.url}/v1/companies/${payer}/payments`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'idempotency-key': `rotation-${ulid()}`,
        },
        body: JSON.stringify({ amount: 1_250, currency: 'usd', customer: 'cus_R1', paymentMethod: 'pm_card_visa' }),
      });
      expect(response.status).toBe(202);
      const { id } = (await response.json()) as { id: string };
      const settled = await waitFor(
        () => db.models.Payment.findById(id).lean(),
        (p) => p?.status === 'succeeded' || p?.status === 'failed',
        { what: 'the payment after rotation' },
      );
      expect(settled?.status).toBe('succeeded');

      // New companies get their data key from the KMS too.
      const newcomer = await createCompany(db, {
        name: 'West Clinic',
        stripeSecretKey: 'sk_test_rotationWestClinic01',
      });
      companies.push({ id: newcomer, secretKey: 'sk_test_rotationWestClinic01' });
      const keys = await vaultKeys();
      expect(keys).toHaveLength(before.length + 1);
      expect(keys.every((key) => key.masterKey.key === cmkA)).toBe(true);
    });

    it('audits the rotation in the platform trail', async () => {
      // The CLI's run is the one that succeeded (the run without the local key failed).
      const rotated = await waitFor(
        () =>
          system.ctx.db.models.AuditEvent.findOne({
            companyId: PLATFORM_AUDIT_SCOPE,
            action: 'keys.rotated',
            outcome: 'success',
          }).lean(),
        (found) => found !== null,
        { what: 'keys.rotated' },
      );
      const started = await system.ctx.db.models.AuditEvent.findOne({
        companyId: PLATFORM_AUDIT_SCOPE,
        action: 'keys.rotation_started',
        'request.requestId': rotated?.request?.requestId,
      }).lean();
      const n = String(before.length);
      const target = `aws:${cmkA}@${kms.endpoint}`;
      expect(started?.request?.requestId).toMatch(/^rot_/);
      expect(started).toMatchObject({
        severity: 'high',
        resource: { type: 'key_vault', id: system.ctx.config.keyVaultNamespace },
        changes: [
          { field: 'masterKey', before: `local (${n})`, after: target },
          { field: 'dataKeys.toRewrap', before: null, after: n },
        ],
      });
      expect(rotated).toMatchObject({
        outcome: 'success',
        request: { requestId: started?.request?.requestId },
        changes: [
          { field: 'masterKey', before: `local (${n})`, after: target },
          { field: 'dataKeys.rewrapped', before: null, after: n },
          { field: 'dataKeys.verified', before: null, after: `${n}/${n}` },
        ],
      });
      expect(rotated?.actor?.id).toMatch(/^cli-/);
    });

    it('is harmless to run again: nothing re-wrapped, every key verified', async () => {
      const keys = await vaultKeys();
      const result = await cli(['keys', 'rotate'], { ...system.ctx.env, ...awsEnv(cmkA) });
      expect(result.code).toBe(0);
      expect(result.out).toContain(`rewrapped: 0; already under the master key: ${keys.length}`);
      expect(result.out).toContain(`verified: ${keys.length}/${keys.length}`);
      expect(await vaultKeys()).toEqual(keys);
    });
  });

  it('refuses a KMS whose certificate is not trusted: exit 1, each key named, nothing re-wrapped', async () => {
    const before = await vaultKeys();
    const result = await cli(['keys', 'rotate'], { ...system.ctx.env, ...awsEnv(cmkB, { KMS_TLS_CA_FILE: '' }) });
    expect(result.code).toBe(1);
    expect(result.out).toContain('rewrapped: 0; already under the master key: 0');
    expect(result.out).toContain(`verified: 0/${before.length}`);
    for (const { id } of companies)
      expect(result.out).toMatch(new RegExp(`NOT VERIFIED \\S+ \\(company-${id}\\): not re-wrapped`));
    expect(await vaultKeys()).toEqual(before);
  });

  it('rotates CMK A → CMK B; once A is disabled, every company still reads back', async () => {
    const n = (await vaultKeys()).length;
    const config = configWith(system.ctx, awsEnv(cmkB, { LOCAL_MASTER_KEY_FILE: '' }));
    const queues = createQueues(system.ctx.redis, config.queuePrefix);
    const report = await rotateMasterKey(
      { client: system.ctx.rawMongo, kms: config.kms, keyVaultNamespace: config.keyVaultNamespace, queues },
      { runId: `rot_${ulid()}`, actor: { type: 'user', id: 'test-operator' } },
    ).finally(() => closeQueues(queues));
    expect(report).toMatchObject({
      rewrapped: n,
      rewrappedFrom: { [`aws:${cmkA}@${kms.endpoint}`]: n },
      total: n,
      verified: n,
      unverified: [],
    });
    expect((await vaultKeys()).map((key) => key.masterKey.key)).toEqual(Array(n).fill(cmkB));

    await kms.disableKey(cmkA);
    const db = await freshDatabase(awsEnv(cmkB, { LOCAL_MASTER_KEY_FILE: '' }));
    expect(await secretKeysSeenBy(db)).toEqual(expectedSecretKeys());
  });
});
