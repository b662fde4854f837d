import type { FastifyInstance } from 'fastify';
import { StripeGateway } from '../gateway/stripe-gateway';
import { openDatabase, type Database } from '../models';
import { loadConfig, type AppConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';
import { loadAnchorPublicKey } from '../models/anchor-key';
import { createRedisConnection, waitForRedis, warnUnlessNoEviction } from '../platform/redis';
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

/** Composition root of the api process. */
export async function startApi(config: AppConfig, logger: Logger, database?: Database): Promise<RunningApi> {
  const db = database ?? (await openDatabase(config));
  const redis = createRedisConnection(config.redisUrl, 'api');
  // Without a listener ioredis prints every reconnect failure; requests answer 503 meanwhile.
  redis.on('error', (error: Error) => logger.warn({ reason: error.message }, 'redis unavailable'));
  if (!(await waitForRedis(redis, REDIS_STARTUP_WAIT_MS)))
    logger.warn('starting without Redis; requests that enqueue answer 503');
  else await warnUnlessNoEviction(redis, logger);
  const queues = createQueues(redis, config.queuePrefix);
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
  logger.info({ url }, 'api listening');
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
