import { Redis, type RedisOptions } from 'ioredis';

/**
 * Workers block on Redis and must wait out an outage (maxRetriesPerRequest: null);
 * the api must fail fast so a request answers 503 instead of hanging
 * (enableOfflineQueue: false, one retry per request).
 */
export type RedisRole = 'worker' | 'api';

export function createRedisConnection(url: string, role: RedisRole): Redis {
  const common: RedisOptions = {
    connectionName: `hipaa-billing-${role}`,
    // Reconnect with capped exponential backoff, forever: Redis coming back must heal the process.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 10), 5_000),
  };
  const roleOptions: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000, commandTimeout: 2_000 };
  return new Redis(url, { ...common, ...roleOptions });
}

/**
 * Waits a little for the first connection so the first requests are not refused
 * for nothing; gives up quietly, since an api whose Redis is down still starts
 * (and answers 503 until Redis is back).
 */
export async function waitForRedis(redis: Redis, ms: number): Promise<boolean> {
  if (redis.status === 'ready') return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, ms);
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    redis.once('ready', onReady);
  });
}

/**
 * BullMQ needs Redis to keep every key: under any eviction policy but `noeviction`, a full Redis silently drops jobs
 * (payments, audit events). Says so loudly at start-up; a Redis that refuses CONFIG (some managed ones) is only noted.
 */
export async function warnUnlessNoEviction(
  redis: Redis,
  logger: { warn(details: object, message: string): void; error(details: object, message: string): void },
): Promise<void> {
  try {
    const [, policy] = ((await redis.config('GET', 'maxmemory-policy')) as string[] | undefined) ?? [];
    if (policy && policy !== 'noeviction') {
      logger.error(
        { maxmemoryPolicy: policy },
        `Redis maxmemory-policy is ${policy}: when Redis fills up it will drop queued jobs (payments, audit events). Set maxmemory-policy noeviction`,
      );
    }
  } catch (error) {
    logger.warn(
      { reason: error instanceof Error ? error.message : String(error) },
      'could not read Redis maxmemory-policy; make sure it is noeviction',
    );
  }
}
