/**
 * A bench child with the two baselines of the deliveries entry, on plain clients (the `mongodb` driver, BullMQ, Node's
 * `http`) and the `standardwebhooks` signer, no product code on the path:
 *
 * - data (argv[2] "data"): a BullMQ worker on its own queue, at the product's concurrency, that replays what one
 *   delivery attempt reads and writes: find the delivery, then its endpoint and event at once, sign the stored body,
 *   POST it on a new connection (as the product does: each connection is checked at connect time), push the attempt
 *   and mark the delivery delivered; the endpoint's failing streak is ended only when the endpoint read has one (the
 *   bench's endpoint has none).
 *   It signs with the secret it is given instead of decrypting the endpoint's: decryption stays a product cost.
 * - limit (argv[2] "limit"): `run` signs and POSTs the given body `count` times, `concurrency` at a time, one new
 *   connection each, and nothing else: the most a sender can do against this receiver on this machine.
 *
 * Like the product's processes it counts its own commands (`reset`, `stats`), so a run shows the replay issues what
 * the product does.
 */
import { request as httpRequest, Agent } from 'node:http';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { MongoClient } from 'mongodb';
import { Webhook } from 'standardwebhooks';
import { loadConfig } from '../platform/config';
import { announceFailure, announceReady, serveParent } from './child';
import { installCommandCounters } from './instrument';

export const DATA_DELIVERIES = { queue: 'bench-data-deliveries', collection: 'data_webhook_deliveries' } as const;

export interface LimitSpec {
  url: string;
  body: string;
  secret: string;
  count: number;
  concurrency: number;
}

interface DataDelivery {
  _id: string;
  endpointId: string;
  eventId: string;
  status: string;
  attempts: Array<{ at: Date; statusCode: number; latencyMs: number }>;
  deliveredAt?: Date;
}

const agent = new Agent({ keepAlive: false });

/** One signed POST on a new connection; resolves with the status once the answer is read. */
function signedPost(url: string, id: string, body: string, secret: string): Promise<number> {
  const at = new Date();
  const headers = {
    'webhook-id': id,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(id, at, body),
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  };
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: 'POST', agent, headers, timeout: 10_000 }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () => resolve(response.statusCode ?? 0));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('timeout')));
    request.on('error', reject);
    request.end(body);
  });
}

async function runLimit(spec: LimitSpec): Promise<{ seconds: number }> {
  const started = performance.now();
  let next = 0;
  const lane = async () => {
    while (next < spec.count) {
      const i = next++;
      const status = await signedPost(spec.url, `msg_limit${i}`, spec.body, spec.secret);
      if (status !== 200) throw new Error(`the receiver answered ${status}`);
    }
  };
  await Promise.all(Array.from({ length: spec.concurrency }, lane));
  return { seconds: (performance.now() - started) / 1000 };
}

async function main(role: string | undefined): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  const secret = process.env.BENCH_DELIVERY_SECRET;
  if (!secret) throw new Error('BENCH_DELIVERY_SECRET is required');
  let stop: () => Promise<void> = async () => undefined;
  if (role === 'data') {
    const mongo = await MongoClient.connect(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
    const db = mongo.db();
    const deliveries = db.collection<DataDelivery>(DATA_DELIVERIES.collection);
    const endpoints = db.collection<{ _id: string; url: string; failingSince?: Date }>('webhook_endpoints');
    const events = db.collection<{ _id: string; body: string }>('events');
    const connection = new Redis(config.redisUrl, { maxRetriesPerRequest: null });
    const worker = new Worker<{ deliveryId: string }>(
      DATA_DELIVERIES.queue,
      async (job) => {
        const delivery = await deliveries.findOne({ _id: job.data.deliveryId });
        if (!delivery) throw new Error(`no delivery ${job.data.deliveryId}`);
        const [endpoint, event] = await Promise.all([
          endpoints.findOne({ _id: delivery.endpointId }),
          events.findOne({ _id: delivery.eventId }),
        ]);
        if (!endpoint || !event) throw new Error('no endpoint or event');
        const started = performance.now();
        const status = await signedPost(endpoint.url, event._id, event.body, secret);
        const at = new Date();
        await deliveries.updateOne(
          { _id: delivery._id },
          {
            $push: {
              attempts: {
                $each: [{ at, statusCode: status, latencyMs: Math.round(performance.now() - started) }],
                $slice: -30,
              },
            },
            $set: { status: status === 200 ? 'delivered' : 'pending', deliveredAt: at, updatedAt: at },
          },
        );
        // As the product: a failing streak to end only when the endpoint read has one.
        if (endpoint.failingSince) {
          await endpoints.updateOne(
            { _id: endpoint._id, failingSince: { $exists: true } },
            { $unset: { failingSince: 1 } },
          );
        }
      },
      { connection, prefix: config.queuePrefix, concurrency: config.webhooks.concurrency },
    );
    stop = async () => {
      await worker.close();
      connection.disconnect();
      await mongo.close();
    };
  } else if (role !== 'limit') {
    throw new Error(`role must be "data" or "limit", got ${role}`);
  }
  serveParent(
    {
      reset: () => counters.reset(),
      stats: () => counters.stats(),
      limit: (spec) => runLimit(spec as LimitSpec),
    },
    () => stop(),
  );
  announceReady({ pid: process.pid });
}

if (require.main === module) main(process.argv[2]).catch(announceFailure);
