import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { deleteKeysByPrefix } from '../devtools/redis-keys';
import { unreachableServices, withDatabaseName, type ServiceAddresses } from '../devtools/services';
import { loadAnchorSigner } from '../models/anchor-key';
import { loadConfig, type AppConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';

/** The webhooks entry's company signs with this; the baselines' `+crypto` route checks signatures against it. */
export const BENCH_WEBHOOK_SECRET = 'whsec_BenchWebhookSigningSecret01';

export function serviceAddresses(env: NodeJS.ProcessEnv = process.env): ServiceAddresses {
  return {
    redisUrl: env.REDIS_URL || 'redis://127.0.0.1:6379',
    mongodbUri: env.MONGODB_URI || 'mongodb://127.0.0.1:27017',
    stripeApiBase: env.STRIPE_API_BASE || 'http://127.0.0.1:12111',
  };
}

/** Fails with what to start when a service does not answer: a benchmark against nothing measures nothing. */
export async function assertServicesReachable(services: ServiceAddresses): Promise<void> {
  const missing = await unreachableServices(services);
  if (missing.length > 0) {
    throw new Error(
      [
        'services unreachable:',
        ...missing.map((line) => `  ${line}`),
        'Unset REDIS_URL, MONGODB_URI and STRIPE_API_BASE and `npm run bench` starts them itself,',
        'or start them and keep them running: eval "$(npm run -s services:start)"',
      ].join('\n'),
    );
  }
}

export function positiveIntFromEnv(name: string, fallback: number, env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return value;
}

/** Runs cleanup steps last-registered first; every step runs even if an earlier one failed. */
export class Teardown {
  private readonly steps: Array<{ what: string; run: () => Promise<void> | void }> = [];

  defer(what: string, run: () => Promise<void> | void): void {
    this.steps.push({ what, run });
  }

  async run(): Promise<void> {
    const failures: string[] = [];
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step.run();
      } catch (error) {
        failures.push(`${step.what}: ${messageOf(error)}`);
      }
    }
    if (failures.length > 0) throw new Error(`cleanup failed:\n  ${failures.join('\n  ')}`);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Runs `body` with a Teardown that always runs afterwards. If both fail, the
 * error says both (the body's failure first: it is the reason the run failed).
 */
export async function withTeardown<T>(body: (teardown: Teardown) => Promise<T>): Promise<T> {
  const teardown = new Teardown();
  let result: T;
  try {
    result = await body(teardown);
  } catch (error) {
    try {
      await teardown.run();
    } catch (cleanupError) {
      throw new Error(`${messageOf(error)}\nand then ${messageOf(cleanupError)}`, { cause: error });
    }
    throw error;
  }
  await teardown.run();
  return result;
}

/**
 * One isolated world on the shared services: its own database, key vault, local
 * master key, audit anchor key and queue prefix. `close()` drops and deletes all of it.
 */
export interface BenchWorld {
  suffix: string;
  config: AppConfig;
  logger: Logger;
  dbName: string;
  /** A driver client without decryption, for counting and dropping. */
  rawMongo: MongoClient;
  /** A plain client for the bench's own Redis work (baseline, cleanup). */
  redis: Redis;
  /** The environment the config was loaded from: what bench child processes get. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function createBenchWorld(
  name: string,
  services: ServiceAddresses,
  env: Record<string, string>,
): Promise<BenchWorld> {
  const suffix = randomBytes(4).toString('hex');
  const dbName = `hbbench_${name}_${suffix}`;
  const keyVaultDb = `hbbenchkv_${suffix}`;
  const keyDir = mkdtempSync(join(tmpdir(), 'hb-bench-'));
  const keyFile = join(keyDir, 'master.key');
  writeFileSync(keyFile, randomBytes(96), { mode: 0o600 });
  const mongodbUri = withDatabaseName(services.mongodbUri, dbName);

  const teardown = new Teardown();
  teardown.defer('remove the temporary keys', () => rmSync(keyDir, { recursive: true, force: true }));
  try {
    const worldEnv: Record<string, string> = {
      NODE_ENV: 'development',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: '0', // the api answers with the port it got
      REDIS_URL: services.redisUrl,
      MONGODB_URI: mongodbUri,
      STRIPE_API_BASE: services.stripeApiBase,
      QUEUE_PREFIX: `{hbbench-${suffix}}`,
      KEY_VAULT_NAMESPACE: `${keyVaultDb}.__keyVault`,
      KMS_PROVIDER: 'local',
      LOCAL_MASTER_KEY_FILE: keyFile,
      // Created there on first use (development); removed with the directory.
      AUDIT_ANCHOR_KEY_FILE: join(keyDir, 'audit-anchor-ed25519.pem'),
      // The limiter stays in the path (one Redis round trip per request) but must not be what is measured.
      RATE_LIMIT_PER_MINUTE: '1000000',
      ...env,
    };
    const config = loadConfig(worldEnv);
    // Made once here, so the api and worker processes read it and never race to create it.
    loadAnchorSigner(config.audit.anchorKeyFile, true);
    // Warnings and errors of the system under test go to stderr, away from the results on stdout.
    const logger = createLogger({ level: config.logLevel, name: `bench-${name}` }, process.stderr);
    const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
    teardown.defer('close the bench Redis client', () => void redis.disconnect());
    await redis.connect();
    teardown.defer(
      'delete the bench Redis keys',
      async () => void (await deleteKeysByPrefix(redis, config.queuePrefix)),
    );
    const rawMongo = await MongoClient.connect(mongodbUri, { serverSelectionTimeoutMS: 10_000 });
    teardown.defer('close the bench MongoDB client', () => rawMongo.close());
    teardown.defer('drop the bench databases', async () => {
      await rawMongo.db(dbName).dropDatabase();
      await rawMongo.db(keyVaultDb).dropDatabase();
    });
    return { suffix, config, logger, dbName, rawMongo, redis, env: worldEnv, close: () => teardown.run() };
  } catch (error) {
    await teardown.run().catch(() => undefined);
    throw error;
  }
}

/** Runs `task(i)` for i in [0, count) with at most `limit` in flight; the first failure stops new starts. */
export async function runBounded(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < count) {
      const i = next++;
      try {
        await task(i);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, lane));
}

/** Nearest-rank percentile of already sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
