import { Queue, QueueEvents, Worker } from 'bullmq';
import { createRedisConnection, type RedisClient } from '../../platform/redis';
import { ensureJob } from '../../queues/job-options';
import { createTestContext, type TestContext } from '../support/harness';

let ctx: TestContext;
let queue: Queue;
let events: QueueEvents;
let worker: Worker | undefined;
let blocking: RedisClient[] = [];
let runs = 0;

beforeAll(async () => {
  ctx = await createTestContext('ensure_job');
  const prefix = ctx.config.queuePrefix;
  // Blocking reads (the worker's, the events stream's) on connections made for them, as the workers process makes them.
  blocking = [
    createRedisConnection(ctx.config.redisUrl, 'worker'),
    createRedisConnection(ctx.config.redisUrl, 'worker'),
  ];
  queue = new Queue('ensure-job', { connection: ctx.redis, prefix });
  events = new QueueEvents('ensure-job', { connection: blocking[0]!, prefix });
  await events.waitUntilReady();
  worker = new Worker(
    'ensure-job',
    async () => {
      runs += 1;
    },
    { connection: blocking[1]!, prefix },
  );
}, 60_000);

afterAll(async () => {
  await worker?.close();
  await events?.close();
  await queue?.close();
  await Promise.all(blocking.map((connection) => connection.quit()));
  await ctx?.close();
}, 60_000);

describe('ensureJob', () => {
  it('runs a finished job once more when several callers ask at once, and none of them fails', async () => {
    const id = 'ensure-job-raced';
    await (await queue.add('work', {}, { jobId: id })).waitUntilFinished(events);
    expect(runs).toBe(1);
    await worker!.pause();
    let added = 0;
    const add = async () => {
      added += 1;
    };

    // Each caller finds the job completed before any of them retries it: one retries, the others find it waiting.
    const acted = await Promise.all(Array.from({ length: 4 }, () => ensureJob(queue, id, add)));
    expect(acted.filter(Boolean)).toHaveLength(1);
    expect(added).toBe(0);
    expect(await (await queue.getJob(id))!.getState()).toBe('waiting');

    void worker!.resume();
    await (await queue.getJob(id))!.waitUntilFinished(events);
    expect(runs).toBe(2);
    expect(await ensureJob(queue, id, add)).toBe(true);
    expect(await ensureJob(queue, 'ensure-job-missing', add)).toBe(true);
    expect(added).toBe(1);
  });
});
