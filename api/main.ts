import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import { StripeGateway } from '../gateway/stripe-gateway';
import { openDatabase, type Database } from '../models';
import { loadConfig, type AppConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';
import { loadAnchorPublicKey } from '../models/anchor-key';
import { createRedisConnection, waitForRedis, warnUnlessNoEviction, type RedisClient } from '../platform/redis';
import { serveMetrics } from '../application/ops/serve-metrics';
import { exitOnStartupFailure, onShutdownSignal } from '../platform/shutdown';
import { closeQueues, createQueues, type Queues } from '../queues';
import { buildApp } from './app';
import { createAuthenticator } from './auth';

export interface RunningApi {
  app: FastifyInstance;
  url: string;
  queues: Queues;
  db: Database;
  stop(): Promise<void>;
}

const REDIS_STARTUP_WAIT_MS = 3_000;
const QUEUE_SETUP_WAIT_MS = 60_000;

/**
 * The queues, each past its connection set-up. BullMQ keeps a queue's set-up error for good: when its Redis version
 * check timed out (the api's 2 s command timeout, on a machine under load), every later enqueue of that queue failed
 * at once with "Command timed out" until the api was restarted. Queues whose set-up failed are made again.
 */
async function readyQueues(redis: RedisClient, prefix: string, logger: Logger): Promise<Queues> {
  const giveUpAt = Date.now() + QUEUE_SETUP_WAIT_MS;
  for (;;) {
    const queues = createQueues(redis, prefix);
    try {
      await Promise.all(Object.values(queues).map((queue) => queue.waitUntilReady()));
      return queues;
    } catch (error) {
      await closeQueues(queues).catch(() => undefined);
      if (Date.now() > giveUpAt) {
        logger.error({ reason: (error as Error).message }, 'queue set-up kept failing; starting anyway');
        return createQueues(redis, prefix);
      }
      logger.warn({ reason: (error as Error).message }, 'queue set-up failed; trying again');
      await sleep(500);
    }
  }
}

/** Composition root of the api process. */
export async function startApi(config: AppConfig, logger: Logger, database?: Database): Promise<RunningApi> {
  const db = database ?? (await openDatabase(config));
  const redis = createRedisConnection(config.redisUrl, 'api');
  // Without a listener ioredis prints every reconnect failure; requests answer 503 meanwhile.
  redis.on('error', (error: Error) => logger.warn({ reason: error.message }, 'redis unavailable'));
  const redisUp = await waitForRedis(redis, REDIS_STARTUP_WAIT_MS);
  if (!redisUp) logger.warn('starting without Redis; requests that enqueue answer 503');
  else await warnUnlessNoEviction(redis, logger);
  const queues = redisUp
    ? await readyQueues(redis, config.queuePrefix, logger)
    : createQueues(redis, config.queuePrefix);
  const app = await buildApp({
    config,
    logger,
    database: db,
    queues,
    redis,
    authenticate: createAuthenticator(config.auth),
    gateway: new StripeGateway({ endpoint: config.stripe.endpoint, timeoutMs: config.stripe.timeoutMs }),
    anchorPublicKey: loadAnchorPublicKey(config.audit, config.env === 'production'),
  });
  const url = await app.listen({ host: config.http.host, port: config.http.port });
  logger.info({ url, fieldCrypto: db.encryption.cryptoProvider }, 'api listening');
  return {
    app,
    url,
    queues,
    db,
    async stop() {
      await app.close();
      // Disconnect first: closing a queue whose Redis never came up would wait for it.
      redis.disconnect();
      await closeQueues(queues);
      if (!database) await db.close();
    },
  };
}

if (require.main === module) {
  let logger: Logger | undefined;
  (async () => {
    const config = loadConfig();
    logger = createLogger({ level: config.logLevel, name: 'hipaa-billing-api' });
    const running = await startApi(config, logger);
    const metrics = await serveMetrics(config.metrics, 'api', logger, {
      queues: running.queues,
      models: running.db.models,
    });
    onShutdownSignal(logger, config.shutdownDeadlineMs, async () => {
      await running.stop();
      await metrics?.close();
    });
  })().catch((error: unknown) => exitOnStartupFailure(logger, error));
}
