import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { UnrecoverableError, Worker, type Queue } from 'bullmq';
import type { MongoClient } from 'mongodb';
import { pollUntil } from '../../devtools/polling';
import { deleteKeysByPrefix } from '../../devtools/redis-keys';
import { withDatabaseName } from '../../devtools/services';
import { openDatabase, type Database } from '../../models';
import { loadConfig, type AppConfig } from '../../platform/config';
import { createLogger, type Logger } from '../../platform/logger';
import { createRedisConnection, type RedisClient } from '../../platform/redis';
import { closeQueues, createQueues, type Queues } from '../../queues';

/** Lines a test logger wrote, parsed, so tests can assert what was (and was not) logged. */
export class CapturedLogs extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    callback();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface TestContext {
  config: AppConfig;
  /** Environment for child processes (api, workers) that should share this context. */
  env: Record<string, string>;
  logger: Logger;
  logs: CapturedLogs;
  db: Database;
  /** One Redis or a Redis Cluster, as REDIS_URL says (the cluster pass: docs/testing.md). */
  redis: RedisClient;
  /** A driver client without decryption: sees exactly what is stored. */
  rawMongo: MongoClient;
  /** Every queue of the registry under this context's prefix (for tests that look at or add jobs). */
  queues: Queues;
  close(): Promise<void>;
}

function uniqueSuffix(): string {
  return randomBytes(5).toString('hex');
}

/**
 * One isolated world per test file: its own database, key vault, master key and
 * queue prefix on the shared real services; everything dropped in close().
 */
export async function createTestContext(name: string, extraEnv: Record<string, string> = {}): Promise<TestContext> {
  const suffix = uniqueSuffix();
  const keyDir = mkdtempSync(join(tmpdir(), 'hb-test-'));
  const keyFile = join(keyDir, 'master.key');
  writeFileSync(keyFile, randomBytes(96), { mode: 0o600 });
  const mongoBase = process.env.MONGODB_URI ?? '';
  const dbName = `hbt_${name}_${suffix}`.slice(0, 60);
  const mongodbUri = withDatabaseName(mongoBase, dbName);
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    REDIS_URL: process.env.REDIS_URL ?? '',
    MONGODB_URI: mongodbUri,
    STRIPE_API_BASE: process.env.STRIPE_API_BASE ?? '',
    QUEUE_PREFIX: `{hbt-${suffix}}`,
    KEY_VAULT_NAMESPACE: `hbkv_${suffix}.__keyVault`,
    LOCAL_MASTER_KEY_FILE: keyFile,
    AUDIT_ANCHOR_KEY_FILE: join(keyDir, 'anchor-ed25519.pem'),
    // A free port each: processes started from one context would otherwise all want their kind's default port.
    METRICS_PORT: '0',
    // Every response checked against the OpenAPI document: one that does not match fails the test (500
    // contract_violation).
    API_CONTRACT_CHECK: process.env.API_CONTRACT_CHECK ?? 'true',
    ...extraEnv,
  };
  const config = loadConfig(env);
  const logs = new CapturedLogs();
  const logger = createLogger({ level: 'debug', name: `test-${name}` }, logs);
  const db = await openDatabase(config);
  const redis = createRedisConnection(config.redisUrl, 'worker');
  const rawMongo = db.plainClient;
  const queues = createQueues(redis, config.queuePrefix);
  return {
    config,
    env,
    logger,
    logs,
    db,
    redis,
    rawMongo,
    queues,
    async close() {
      await closeQueues(queues);
      await rawMongo.db(dbName).dropDatabase();
      await rawMongo.db(config.keyVaultNamespace.split('.')[0]).dropDatabase();
      await deleteKeysByPrefix(redis, config.queuePrefix);
      await Promise.all([db.close(), redis.quit()]);
      rmSync(keyDir, { recursive: true, force: true });
    },
  };
}

/** Polls until `probe` returns a value that `done` accepts, or fails after the deadline. No fixed sleeps. */
export async function waitFor<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  { timeoutMs = 15_000, intervalMs = 50, what = 'condition' } = {},
): Promise<T> {
  return pollUntil(probe, done, { timeoutMs, intervalMs, what });
}

/**
 * Queues a job with `add` while a worker on its queue fails every job for good (`UnrecoverableError`, as one out of
 * retries ends), and returns once the job `jobId` is failed: what a sweep must then find and give a job again.
 */
export async function failedForGood(
  ctx: TestContext,
  queue: Queue,
  jobId: string,
  add: () => Promise<unknown>,
): Promise<void> {
  const connection = ctx.redis.duplicate();
  const failing = new Worker(
    queue.name,
    async () => {
      throw new UnrecoverableError('database_unavailable');
    },
    { connection, prefix: ctx.config.queuePrefix },
  );
  try {
    await add();
    await waitFor(
      () => queue.getJobState(jobId),
      (state) => state === 'failed',
      { what: `job ${jobId} to fail` },
    );
  } finally {
    await failing.close();
    await connection.quit();
  }
}
