import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { MongoClient } from 'mongodb';
import type { AppConfig } from '../platform/config';
import { createRedisConnection, waitForRedis } from '../platform/redis';
import { deleteKeysByPrefix } from './redis-keys';

/**
 * `npm run dev` keeps its data (MongoDB, on FerretDB's PostgreSQL) apart from the master key that wraps its data keys
 * (`.secrets/` in the checkout): the data can outlive the key (a new clone, a deleted `.secrets/`). scripts/dev.sh
 * gives each checkout its own database, and this module records which master key the data belongs to, so a mismatch
 * is one line that says how to start over instead of `HMAC validation failure`.
 */

/** Only databases scripts/dev.sh names are ever dropped by `--reset`. */
export const DEV_DATABASE_PREFIX = 'hipaa_billing_dev_';
const MARKER_COLLECTION = 'devMasterKey';
const MARKER_ID = 'fingerprint';

export function startOverLine(config: AppConfig): string {
  const keyFile = config.kms.provider === 'local' ? config.kms.keyFile : 'the master key';
  return (
    `the development data in MongoDB database ${databaseName(config.mongodbUri)} was encrypted under another master ` +
    `key than ${keyFile} (another checkout's, or .secrets/ was deleted); start over with \`npm run dev -- --reset\`, ` +
    'which drops only the development data'
  );
}

export function databaseName(uri: string): string {
  return /^mongodb(?:\+srv)?:\/\/[^/]*\/([^?]+)/.exec(uri)?.[1] ?? 'test';
}

function keyFingerprint(config: AppConfig): string | undefined {
  if (config.kms.provider !== 'local' || !existsSync(config.kms.keyFile)) return undefined;
  return createHash('sha256').update(readFileSync(config.kms.keyFile)).digest('hex');
}

async function withClient<T>(config: AppConfig, use: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

function markers(client: MongoClient, config: AppConfig) {
  const [vaultDb] = config.keyVaultNamespace.split('.') as [string];
  return client.db(vaultDb).collection<{ _id: string; sha256: string }>(MARKER_COLLECTION);
}

/**
 * 'mismatch' when the data was recorded under another master key than this checkout's (or its key is gone);
 * 'unknown' when nothing is recorded yet (new data, or data from before the record was kept).
 */
export async function devDataKeyStatus(config: AppConfig): Promise<'match' | 'mismatch' | 'unknown'> {
  if (config.kms.provider !== 'local') return 'unknown';
  const recorded = await withClient(config, (client) => markers(client, config).findOne({ _id: MARKER_ID }));
  if (!recorded) return 'unknown';
  return recorded.sha256 === keyFingerprint(config) ? 'match' : 'mismatch';
}

/** Records that the development data belongs to this checkout's master key (a hash of it; not the key). */
export async function recordDevDataKey(config: AppConfig): Promise<void> {
  const sha256 = keyFingerprint(config);
  if (!sha256) return;
  await withClient(config, (client) =>
    markers(client, config).updateOne({ _id: MARKER_ID }, { $set: { sha256 } }, { upsert: true }),
  );
}

/**
 * `npm run dev -- --reset`: drops the development database, its key vault and its queues' Redis keys; the master key
 * and everything else stay. Refuses outside development and for a database scripts/dev.sh did not name.
 */
export async function resetDevData(config: AppConfig): Promise<string[]> {
  const database = databaseName(config.mongodbUri);
  if (config.env === 'production' || !database.startsWith(DEV_DATABASE_PREFIX)) {
    throw new Error(`--reset drops only a development database (${DEV_DATABASE_PREFIX}…), not ${database}`);
  }
  const [vaultDb] = config.keyVaultNamespace.split('.') as [string];
  if (!vaultDb.startsWith(DEV_DATABASE_PREFIX)) {
    throw new Error(`--reset drops only a development key vault (${DEV_DATABASE_PREFIX}…), not ${vaultDb}`);
  }
  await withClient(config, async (client) => {
    await client.db(database).dropDatabase();
    if (vaultDb !== database) await client.db(vaultDb).dropDatabase();
  });
  // One Redis or a Redis Cluster, as REDIS_URL says; fails fast when it does not answer.
  const redis = createRedisConnection(config.redisUrl, 'api');
  try {
    if (!(await waitForRedis(redis, 5_000))) throw new Error('Redis (REDIS_URL) does not answer');
    await deleteKeysByPrefix(redis, config.queuePrefix);
  } finally {
    redis.disconnect();
  }
  return [database, vaultDb, `Redis ${config.queuePrefix}:*`];
}
