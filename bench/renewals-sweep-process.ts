/**
 * A bench child that enqueues renewals once and says what that cost, so its peak RSS is its own: a fresh process per
 * measurement (`process.resourceUsage().maxRSS` is the peak since the process started).
 *
 * - `sweep`: the product's `sweepRenewals` (application/subscriptions/sweep-renewals.ts) over the world's database and
 *   renewals queue, as the renewals worker runs it (its default page and batch sizes).
 * - `replay` {prefix}: the data-bound replay, the sweep's reads and adds from plain clients: the `mongodb` driver's
 *   cursor over the same query and projection (batches of 1,000), each company's rank counted, `addBulk` of each 1,000
 *   renewal jobs (the product's name, options, id and priority) on a queue prefix of its own;
 * - `addbulk` {n, prefix}: the limit, `Queue.addBulk` of n no-op jobs in batches of 1,000 on a queue prefix of its
 *   own, with the renewal job's name, options and id shape (the same Redis work per job, no database).
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { MongoClient, type Document } from 'mongodb';
import { sweepRenewals } from '../application/subscriptions/sweep-renewals';
import { openDatabase } from '../models';
import { loadConfig } from '../platform/config';
import { createLogger } from '../platform/logger';
import { QUEUE_NAMES } from '../queues/names';
import { renewalJob, type RenewalJob } from '../queues/renewals.queue';
import { announceFailure, announceReady, serveParent } from './child';
import { replaySweep } from './sweep-replay';
import { installCommandCounters, total } from './instrument';

export interface EnqueueMeasurement {
  seconds: number;
  enqueued: number;
  /** Peak resident set of the process (start-up included), and its RSS just before the timed part. */
  maxRssMb: number;
  rssBeforeMb: number;
  heapUsedMb: number;
  mongoCommands: number;
  redisCommands: number;
  cpuMs: number;
}

/** The no-op queue of the addBulk limit (on a prefix of its own each time). */
export const NOOP_RENEWALS_QUEUE = 'bench-noop-renewals';

const mb = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;

async function main(): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  const logger = createLogger({ level: config.logLevel, name: 'bench-renewals-sweep' }, process.stderr);
  const db = await openDatabase(config);
  const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
  let plain: MongoClient | undefined;

  const measure = async (run: () => Promise<number>): Promise<EnqueueMeasurement> => {
    if (global.gc) global.gc();
    counters.reset();
    const rssBeforeMb = mb(process.memoryUsage.rss());
    const startedAt = performance.now();
    const enqueued = await run();
    const seconds = (performance.now() - startedAt) / 1000;
    const stats = counters.stats();
    return {
      seconds,
      enqueued,
      maxRssMb: Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10,
      rssBeforeMb,
      heapUsedMb: mb(process.memoryUsage().heapUsed),
      mongoCommands: total(stats.mongo),
      redisCommands: total(stats.redis),
      cpuMs: stats.cpuMs,
    };
  };

  const queues: Queue[] = [];
  serveParent(
    {
      sweep: () =>
        measure(async () => {
          const renewalsQueue = new Queue<RenewalJob>(QUEUE_NAMES.renewals, {
            connection,
            prefix: config.queuePrefix,
          });
          queues.push(renewalsQueue);
          const result = await sweepRenewals({ models: db.models, renewalsQueue, logger });
          return result.enqueued;
        }),
      replay: (payload) =>
        measure(async () => {
          const { prefix } = payload as { prefix: string };
          plain ??= await MongoClient.connect(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
          const queue = new Queue(QUEUE_NAMES.renewals, { connection, prefix });
          queues.push(queue);
          return replaySweep(plain.db().collection<Document & { _id: string }>('subscriptions'), queue);
        }),
      addbulk: (payload) =>
        measure(async () => {
          const { n, prefix } = payload as { n: number; prefix: string };
          const queue = new Queue(NOOP_RENEWALS_QUEUE, { connection, prefix });
          queues.push(queue);
          const periodStart = new Date();
          for (let start = 0; start < n; start += 1_000) {
            const batch = [];
            for (let i = start; i < Math.min(n, start + 1_000); i += 1) {
              // A subscription id of the real shape (sub_ and 26 characters): same payload and job id sizes.
              batch.push(
                renewalJob({ _id: `sub_${String(i).padStart(26, '0')}`, currentPeriod: { start: periodStart } }),
              );
            }
            await queue.addBulk(batch);
          }
          return n;
        }),
    },
    async () => {
      await Promise.all(queues.map((queue) => queue.close()));
      connection.disconnect();
      await db.close();
      await plain?.close();
    },
  );
  announceReady({ pid: process.pid });
}

if (require.main === module) main().catch(announceFailure);
