import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { parseRedisUrl } from './redis-url';

/** One Redis, or a Redis Cluster: BullMQ, the rate limiter and the dashboard sessions take either. */
export type RedisClient = Redis | Cluster;

/**
 * Workers block on Redis and must wait out an outage (maxRetriesPerRequest: null);
 * the api must fail fast so a request answers 503 instead of hanging
 * (enableOfflineQueue: false, one retry per request).
 */
export type RedisRole = 'worker' | 'api';

/** The connection REDIS_URL names (platform/redis-url.ts): one Redis, a Redis Cluster, or Sentinel's current master. */
export function createRedisConnection(url: string, role: RedisRole): RedisClient {
  const common: RedisOptions = {
    connectionName: `hipaa-billing-${role}`,
    // Reconnect with capped exponential backoff, forever: Redis coming back must heal the process.
    retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 10), 5_000),
  };
  const roleOptions: RedisOptions =
    role === 'worker'
      ? { maxRetriesPerRequest: null, enableReadyCheck: true }
      : { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000, commandTimeout: 2_000 };
  const target = parseRedisUrl(url);
  const credentials = { username: target.username, password: target.password };
  switch (target.mode) {
    case 'single':
      return new Redis(url, { ...common, ...roleOptions });
    case 'sentinel':
      return new Redis({
        ...common,
        ...roleOptions,
        ...credentials,
        sentinels: target.hosts,
        name: target.name,
        db: target.db,
        sentinelUsername: target.sentinelUsername,
        sentinelPassword: target.sentinelPassword,
        ...(target.tls ? { tls: {}, sentinelTLS: {}, enableTLSForSentinelMode: true } : {}),
      });
    case 'cluster': {
      const { enableOfflineQueue, enableReadyCheck, ...nodeOptions } = roleOptions;
      const options: ClusterOptions = {
        // The api refuses at once while the cluster is not ready; workers queue their commands until it is.
        enableOfflineQueue: enableOfflineQueue ?? true,
        enableReadyCheck: enableReadyCheck ?? true,
        clusterRetryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 10), 5_000),
        // A master failing over takes the replica's election (cluster-node-timeout and a second or two): commands to
        // its slots wait and retry on the new master (16 redirections × 300 ms) instead of failing at the first try.
        retryDelayOnFailover: 300,
        retryDelayOnClusterDown: 300,
        redisOptions: { ...nodeOptions, ...credentials, connectionName: common.connectionName },
        // TLS: nodes announce addresses; keep the names they announce so certificates verify (ioredis' advice for
        // managed clusters such as ElastiCache).
        ...(target.tls ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      };
      if (target.tls) options.redisOptions!.tls = {};
      return new Cluster(target.hosts, options);
    }
  }
}

/** The masters to ask about server-wide things (settings, keys): every master of a cluster, or the one Redis. */
export function redisMasters(redis: RedisClient): Redis[] {
  return redis instanceof Cluster ? redis.nodes('master') : [redis];
}

/**
 * Waits a little for the first connection so the first requests are not refused
 * for nothing; gives up quietly, since an api whose Redis is down still starts
 * (and answers 503 until Redis is back).
 */
export async function waitForRedis(redis: RedisClient, ms: number): Promise<boolean> {
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
  redis: RedisClient,
  logger: { warn(details: object, message: string): void; error(details: object, message: string): void },
): Promise<void> {
  try {
    // Every master of a cluster: one node under an eviction policy is enough to lose the jobs of its slots.
    const policies = await Promise.all(
      redisMasters(redis).map(async (node) => {
        const [, policy] = ((await node.config('GET', 'maxmemory-policy')) as string[] | undefined) ?? [];
        return policy;
      }),
    );
    const policy = policies.find((p) => p && p !== 'noeviction');
    if (policy) {
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
