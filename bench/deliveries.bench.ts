import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import { ulid } from 'ulid';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { QUEUE_NAMES } from '../queues/names';
import {
  WEBHOOK_DELIVERY_JOB_NAME,
  webhookDeliveryJobId,
  webhookDeliveryJobOptions,
} from '../queues/webhook-deliveries.queue';
import { startChild } from './child';
import { DATA_DELIVERIES, type LimitSpec } from './deliveries-baseline-process';
import type { ReceiverInfo } from './receiver-process';
import { entryResult, type BenchEntry, type EntryResult, dataBoundBaseline } from './report';
import { createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown, type BenchWorld } from './support';
import {
  clientSettings,
  completionCounter,
  perOp,
  readStats,
  resetCounters,
  settle,
  startProduct,
  splitIntoRounds,
  type Counted,
} from './system';

/** A `payment.succeeded` event body as the product stores and signs it (about 300 bytes). */
function eventBody(i: number): string {
  return JSON.stringify({
    type: 'payment.succeeded',
    timestamp: new Date().toISOString(),
    data: {
      object: 'payment',
      id: `pay_${ulid()}`,
      status: 'succeeded',
      amount: 4_500 + i,
      currency: 'usd',
      officeId: 'office-east',
      serviceCategory: 'copay',
      createdAt: new Date().toISOString(),
    },
  });
}

/** The event and delivery records, written before the clock starts (emitting is the audit worker's cost, not this). */
async function seed(world: BenchWorld, receiverUrl: string, secret: string, total: number) {
  const db = await openDatabase(world.config);
  try {
    const companyId = await createCompany(db, {
      name: 'Bench Deliveries Clinic',
      stripeSecretKey: 'sk_test_benchStripeMock',
      compliance: devAttestation('bench'),
    });
    const endpointId = `we_${ulid()}`;
    const now = new Date();
    await db.models.WebhookEndpoint.create({
      _id: endpointId,
      companyId,
      url: receiverUrl,
      enabledEvents: ['*'],
      disabled: false,
      secrets: [{ secret: await db.encryption.encrypt(companyId, secret), createdAt: now }],
    });
    const mongo = world.rawMongo.db(world.dbName);
    const events = Array.from({ length: total }, (_, i) => ({
      _id: `msg_${ulid()}`,
      auditEventId: `evt_bench_${i}`,
      companyId,
      type: 'payment.succeeded',
      occurredAt: now,
      body: eventBody(i),
      createdAt: now,
    }));
    const deliveryOf = (event: (typeof events)[number]) => ({
      _id: `dlv_${ulid()}`,
      companyId,
      endpointId,
      eventId: event._id,
      eventType: event.type,
      status: 'pending',
      attempts: [],
      redeliveries: 0,
      createdAt: now,
      updatedAt: now,
    });
    const product = events.map(deliveryOf);
    const data = events.map(deliveryOf);
    for (let i = 0; i < total; i += 500) {
      await mongo.collection<{ _id: string }>('events').insertMany(events.slice(i, i + 500));
      await mongo.collection<{ _id: string }>('webhook_deliveries').insertMany(product.slice(i, i + 500));
      await mongo.collection<{ _id: string }>(DATA_DELIVERIES.collection).insertMany(data.slice(i, i + 500));
    }
    return { product: product.map((d) => d._id), data: data.map((d) => d._id), body: events[0]!.body };
  } finally {
    await db.close();
  }
}

/**
 * Signed webhook deliveries per second: the product's `webhook-deliveries` worker (its own process, nothing else in
 * it) delivering stored events to a receiver in another process, timed from the moment its queue is resumed with the
 * jobs in it to the last job completed. Each delivery reads the delivery, endpoint (its secret decrypted) and event,
 * signs the stored body (Standard Webhooks), POSTs it through the connect-time address filter on a new connection,
 * and records the attempt. Baselines, same receiver and concurrency: the data-bound replay of those reads, the POST
 * and those writes with plain clients on a BullMQ queue of its own (its own process), and the limit, a bare loop
 * that only signs and POSTs (its own process).
 *
 * BENCH_DELIVERIES (2000), BENCH_WARMUP (50), BENCH_ROUNDS (2), BENCH_DEADLINE_MS (180000); WEBHOOK_CONCURRENCY
 * (the app's, 10) is the worker's concurrency and the baselines'.
 */
export const deliveriesBench: BenchEntry = {
  name: 'deliveries',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const ops = positiveIntFromEnv('BENCH_DELIVERIES', 2_000);
      const deadlineMs = positiveIntFromEnv('BENCH_DEADLINE_MS', 180_000);
      const settings = clientSettings();
      const concurrency: Record<string, string> = process.env.WEBHOOK_CONCURRENCY
        ? { WEBHOOK_CONCURRENCY: process.env.WEBHOOK_CONCURRENCY }
        : {};
      const world = await createBenchWorld('deliveries', serviceAddresses(), concurrency);
      teardown.defer('clean up the bench world', () => world.close());
      const secret = `whsec_${randomBytes(32).toString('base64')}`;

      const receiver = await startChild<ReceiverInfo>('receiver-process');
      teardown.defer('stop the receiver', () => receiver.stop());
      const total = ops + settings.warmup;
      const ids = await seed(world, receiver.info.url, secret, total);

      const baselineEnv = { PATH: process.env.PATH ?? '', ...world.env, BENCH_DELIVERY_SECRET: secret };
      const startBaseline = async (role: 'data' | 'limit') => {
        const child = await startChild<{ pid: number }>('deliveries-baseline-process', {
          args: [role],
          env: baselineEnv,
        });
        teardown.defer(`stop the ${role} baseline`, () => child.stop());
        return child;
      };
      const [workers, data, limit] = await Promise.all([
        startProduct(world, teardown, 'workers', {}, ['--queues', QUEUE_NAMES.webhookDeliveries]),
        startBaseline('data'),
        startBaseline('limit'),
      ]);

      const options = webhookDeliveryJobOptions(world.config.webhooks.retryScheduleMs);
      const queues = {
        product: new Queue(QUEUE_NAMES.webhookDeliveries, {
          connection: world.redis,
          prefix: world.config.queuePrefix,
        }),
        data: new Queue(DATA_DELIVERIES.queue, { connection: world.redis, prefix: world.config.queuePrefix }),
      };
      teardown.defer('close the bench queues', async () => {
        await Promise.all(Object.values(queues).map((queue) => queue.close()));
      });
      const counters = {
        product: await completionCounter(world, teardown, QUEUE_NAMES.webhookDeliveries),
        data: await completionCounter(world, teardown, DATA_DELIVERIES.queue),
      };
      /** Queues `part` while its queue is paused, then resumes it: seconds until the last of them completed. */
      const drive = async (which: 'product' | 'data', part: string[]) => {
        const queue = queues[which];
        await queue.pause();
        await queue.addBulk(
          part.map((deliveryId) => ({
            name: WEBHOOK_DELIVERY_JOB_NAME,
            data: { deliveryId },
            opts: {
              ...options,
              jobId: which === 'product' ? webhookDeliveryJobId({ deliveryId }) : `data-${deliveryId}`,
            },
          })),
        );
        const before = counters[which].completed;
        const startedAt = Date.now();
        await queue.resume();
        const doneAt = await counters[which].until(before + part.length, deadlineMs);
        return (doneAt - startedAt) / 1000;
      };

      await drive('product', ids.product.slice(ops));
      await drive('data', ids.data.slice(ops));
      const workerConcurrency = world.config.webhooks.concurrency;
      const limitSpec = (count: number): LimitSpec => ({
        url: receiver.info.url,
        body: ids.body,
        secret,
        count,
        concurrency: workerConcurrency,
      });
      await limit.request('limit', limitSpec(settings.warmup));
      const limitRun = await limit.request<{ seconds: number }>('limit', limitSpec(ops));

      const productProcesses: Record<string, Counted> = { workers };
      const dataProcesses: Record<string, Counted> = { 'data workers': data };
      await resetCounters([workers, data]);
      let productSeconds = 0;
      let dataSeconds = 0;
      const rounds = splitIntoRounds(
        ids.product.slice(0, ops).map((id, i) => [id, ids.data[i]!] as const),
        settings.rounds,
      );
      for (const round of rounds) {
        dataSeconds += await drive(
          'data',
          round.map(([, id]) => id),
        );
        productSeconds += await drive(
          'product',
          round.map(([id]) => id),
        );
      }
      const productPerOp = perOp(await readStats(productProcesses), ops);
      const dataPerOp = perOp(await readStats(dataProcesses), ops);
      await settle([
        { perOp: productPerOp, children: productProcesses },
        { perOp: dataPerOp, children: dataProcesses },
      ]);

      // Every delivery delivered, every request signed and received: otherwise the numbers mean nothing.
      const mongo = world.rawMongo.db(world.dbName);
      const delivered = {
        product: await mongo.collection('webhook_deliveries').countDocuments({ status: 'delivered' }),
        data: await mongo.collection(DATA_DELIVERIES.collection).countDocuments({ status: 'delivered' }),
      };
      const got = await receiver.request<{ received: number; signed: number }>('count');
      const expected = 2 * total + settings.warmup + ops;
      if (delivered.product !== total || delivered.data !== total || got.signed !== expected) {
        throw new Error(
          `delivered ${JSON.stringify(delivered)} of ${total} each; the receiver got ${got.signed} signed of ${expected}`,
        );
      }

      return entryResult({
        name: 'deliveries',
        summary: `${ops} signed webhook deliveries (~${ids.body.length} B) to a receiver process, worker concurrency ${workerConcurrency}, one workers process`,
        unit: 'deliveries',
        ops,
        seconds: productSeconds,
        p50Ms: null,
        p99Ms: null,
        baselines: {
          limit: {
            what: 'bare loop: sign + POST, new connection each, same concurrency',
            perSecond: ops / limitRun.seconds,
          },
          dataBound: dataBoundBaseline(
            'same MongoDB + Redis commands and signed POST, plain clients',
            ops / dataSeconds,
            dataPerOp,
          ),
        },
        perOp: productPerOp,
      });
    }),
};
