/** The floor any queue-driven entry can be compared with: what BullMQ costs when the work costs nothing. */
import { Queue, Worker } from 'bullmq';
import { ulid } from 'ulid';
import { withDeadline } from '../platform/deadline';
import { createRedisConnection } from '../platform/redis';
import { chargeJobOptions, type ChargeJob } from '../queues/charges.queue';
import { runBounded, withTeardown, type BenchWorld } from './support';

export interface NoopBaselineOptions {
  jobs: number;
  /** Jobs run first and not timed. */
  warmup: number;
  /** At most this many `add()` calls in flight, like the clients of the path being compared. */
  producerConcurrency: number;
  workerConcurrency: number;
  deadlineMs: number;
}

/**
 * Jobs through BullMQ alone, on the bench world's Redis and prefix: an api-style
 * producer connection, the charge jobs' options (attempts, backoff, removeOn*),
 * a Worker whose processor returns at once. Timed from the first add to the last
 * `completed` event; returns seconds.
 */
export async function measureNoopBaseline(world: BenchWorld, options: NoopBaselineOptions): Promise<number> {
  const { config } = world;
  return withTeardown(async (teardown) => {
    const producer = createRedisConnection(config.redisUrl, 'api');
    teardown.defer('close the baseline producer connection', () => void producer.disconnect());
    const consumer = createRedisConnection(config.redisUrl, 'worker');
    teardown.defer('close the baseline worker connection', async () => void (await consumer.quit()));
    const queue = new Queue<ChargeJob>('bench-noop', { connection: producer, prefix: config.queuePrefix });
    teardown.defer('close the baseline queue', () => queue.close());
    const worker = new Worker<ChargeJob>('bench-noop', async () => undefined, {
      connection: consumer,
      prefix: config.queuePrefix,
      concurrency: options.workerConcurrency,
    });
    teardown.defer('close the baseline worker', () => worker.close());
    worker.on('error', (error) => world.logger.error({ err: error }, 'baseline worker error'));
    await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);

    let completed = 0;
    let target = 0;
    let reached: (() => void) | undefined;
    worker.on('completed', () => {
      completed += 1;
      if (completed === target) reached?.();
    });
    worker.on('failed', (job, error) => world.logger.error({ jobId: job?.id, err: error }, 'baseline job failed'));

    const round = async (count: number, tag: string): Promise<number> => {
      target = completed + count;
      const allCompleted = new Promise<number>((resolve) => {
        reached = () => resolve(performance.now());
      });
      const started = performance.now();
      await runBounded(count, options.producerConcurrency, async (i) => {
        const paymentId = `pay_${ulid()}`;
        await queue.add(
          'noop',
          { paymentId, requestId: `req_${ulid()}` },
          { ...chargeJobOptions, jobId: `noop-${tag}-${i}` },
        );
      });
      const finished = await withDeadline(allCompleted, options.deadlineMs, `${count} no-op jobs to complete`);
      return (finished - started) / 1000;
    };
    await round(options.warmup, 'warmup');
    return round(options.jobs, 'timed');
  });
}
