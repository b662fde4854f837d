import type { FastifyInstance } from 'fastify';
import type { RedisClient } from '../../platform/redis';
import type { Connection } from 'mongoose';
import { RETRY_AFTER_SECONDS_ON_503 } from '../openapi/spec';

async function check(probe: () => Promise<unknown>): Promise<'ok' | 'unavailable'> {
  try {
    await probe();
    return 'ok';
  } catch {
    return 'unavailable';
  }
}

type Readiness = { ready: boolean; redis: 'ok' | 'unavailable'; mongodb: 'ok' | 'unavailable' };

/** How long one answer of /readyz serves every caller: a burst of probes costs the stores one ping each. */
export const READINESS_CACHE_MS = 1_000;

/** /healthz: the process is up. /readyz: it can do work (Redis and MongoDB answer), asked at most once a second. */
export function registerHealthRoutes(app: FastifyInstance, deps: { redis: RedisClient; mongo: Connection }): void {
  let cached: { at: number; answer: Promise<Readiness> } | undefined;
  const readiness = async (): Promise<Readiness> => {
    const [redis, mongodb] = await Promise.all([
      check(() => deps.redis.ping()),
      check(() => {
        const db = deps.mongo.db;
        if (!db) throw new Error('not connected');
        return db.admin().ping();
      }),
    ]);
    return { ready: redis === 'ok' && mongodb === 'ok', redis, mongodb };
  };
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const now = Date.now();
    if (!cached || now - cached.at >= READINESS_CACHE_MS) cached = { at: now, answer: readiness() };
    const { ready, redis, mongodb } = await cached.answer;
    if (!ready) void reply.header('retry-after', String(RETRY_AFTER_SECONDS_ON_503));
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', redis, mongodb });
  });
}
