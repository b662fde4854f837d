import Fastify, { type FastifyInstance } from 'fastify';
import type { RedisClient } from '../../platform/redis';
import { READINESS_CACHE_MS, registerHealthRoutes } from '../../api/routes/health';
import { createTestContext, waitFor, type TestContext } from '../support/harness';

/**
 * Issue 20: /readyz is outside the rate limits (probes must reach it), so a burst of probes must not become a
 * burst of pings at Redis and MongoDB: one answer serves every caller for a second.
 */
let ctx: TestContext;
let app: FastifyInstance;
let url: string;
let pings = 0;

beforeAll(async () => {
  ctx = await createTestContext('readiness');
  // The real Redis, with its pings counted.
  const redis = new Proxy(ctx.redis, {
    get(target, property, receiver) {
      if (property === 'ping') {
        return () => {
          pings += 1;
          return target.ping();
        };
      }
      return Reflect.get(target, property, receiver) as unknown;
    },
  }) as RedisClient;
  app = Fastify();
  registerHealthRoutes(app, { redis, mongo: ctx.db.connection });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await app?.close();
  await ctx?.close();
});

const ready = () => fetch(`${url}/readyz`);

it('answers a burst of probes with one check of the stores, and checks again after a second', async () => {
  const answers = await Promise.all(Array.from({ length: 200 }, ready));
  expect(answers.every((a) => a.status === 200)).toBe(true);
  expect(await answers[0]!.json()).toEqual({ status: 'ready', redis: 'ok', mongodb: 'ok' });
  // One check, or two if the burst straddled the end of a cache period on a slow machine.
  expect(pings).toBeGreaterThanOrEqual(1);
  expect(pings).toBeLessThanOrEqual(2);
  const before = pings;
  await waitFor(
    async () => (await ready(), pings),
    (count) => count > before,
    { timeoutMs: READINESS_CACHE_MS + 10_000, intervalMs: 100, what: '/readyz to check the stores again' },
  );
});
