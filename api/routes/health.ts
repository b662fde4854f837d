import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import type { Connection } from 'mongoose';

async function check(probe: () => Promise<unknown>): Promise<'ok' | 'unavailable'> {
  try {
    await probe();
    return 'ok';
  } catch {
    return 'unavailable';
  }
}

/** /healthz: the process is up. /readyz: it can do work (Redis and MongoDB answer). */
export function registerHealthRoutes(app: FastifyInstance, deps: { redis: Redis; mongo: Connection }): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const [redis, mongodb] = await Promise.all([
      check(() => deps.redis.ping()),
      check(() => {
        const db = deps.mongo.db;
        if (!db) throw new Error('not connected');
        return db.admin().ping();
      }),
    ]);
    const ready = redis === 'ok' && mongodb === 'ok';
    return reply.status(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', redis, mongodb });
  });
}
