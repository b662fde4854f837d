import type { Queue } from 'bullmq';
import { sweepOutbox } from '../../application/outbox/sweep-outbox';
import { enqueueWebhookDelivery, webhookDeliveryJobId } from '../../queues/webhook-deliveries.queue';
import type { ChargeJob } from '../../queues/charges.queue';
import { chargeJobId } from '../../queues/charges.queue';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import { createTestContext, failedForGood, type TestContext } from '../support/harness';
import { insertOutgoingDeliveries, insertPayment } from '../support/records';

/** The outbox sweep against real Redis and FerretDB: one record that cannot be queued does not stop the rest. */
let ctx: TestContext;
let chargesQueue: Queue<ChargeJob>;
let stripeEventsQueue: Queue<StripeEventJob>;

beforeAll(async () => {
  ctx = await createTestContext('outbox_sweep');
  chargesQueue = ctx.queues.charges;
  stripeEventsQueue = ctx.queues['stripe-events'];
});

afterAll(async () => {
  await ctx.close();
});

it('queues every stale payment but the one whose enqueue fails, and says so; the next sweep queues that one', async () => {
  const stale = await Promise.all(
    [1, 2, 3].map(() => insertPayment(ctx.db.models, { companyId: 'co_sweep', status: 'queued' })),
  );
  const broken = stale[1]!;
  // The queue refuses one payment's job (as a Redis error would), the first time only.
  let refusals = 0;
  const flaky = new Proxy(chargesQueue, {
    get(target, property, receiver) {
      if (property !== 'getJob') return Reflect.get(target, property, receiver) as unknown;
      return (id: string) => {
        if (id === chargeJobId(broken._id) && refusals++ === 0) return Promise.reject(new Error('connection lost'));
        return target.getJob(id);
      };
    },
  });

  const first = await sweepOutbox({
    models: ctx.db.models,
    chargesQueue: flaky,
    stripeEventsQueue,
    logger: ctx.logger,
    staleAfterMs: 0,
  });
  expect(first).toMatchObject({ requeued: 2, failed: 1 });
  for (const payment of stale) {
    const job = await chargesQueue.getJob(chargeJobId(payment._id));
    expect({ payment: payment._id, queued: job !== undefined }).toEqual({
      payment: payment._id,
      queued: payment !== broken,
    });
  }
  expect(ctx.logs.text).toContain('outbox sweep could not queue a record');
  expect(ctx.logs.text).toContain(broken._id);

  const second = await sweepOutbox({
    models: ctx.db.models,
    chargesQueue: flaky,
    stripeEventsQueue,
    logger: ctx.logger,
    staleAfterMs: 0,
  });
  expect(second).toMatchObject({ requeued: 1, failed: 0 });
  expect(await chargesQueue.getJob(chargeJobId(broken._id))).toBeDefined();
});

it('a webhook delivery whose job failed for good before it recorded an attempt gets the job back, attempts reset', async () => {
  const queue = ctx.queues['webhook-deliveries'];
  const schedule = [1_000, 2_000];
  const { deliveryIds } = await insertOutgoingDeliveries(ctx.db.models, {
    companyId: 'co_sweep',
    endpointIds: ['we_a'],
  });
  const job = { deliveryId: deliveryIds[0]! };
  // Its job fails for good before it records an attempt (a process that could not read the delivery, retries spent).
  await failedForGood(ctx, queue, webhookDeliveryJobId(job), () => enqueueWebhookDelivery(queue, job, schedule));

  const sweep = (staleAfterMs: number) =>
    sweepOutbox({
      models: ctx.db.models,
      chargesQueue,
      stripeEventsQueue,
      webhookDeliveries: { queue, retryScheduleMs: schedule },
      logger: ctx.logger,
      staleAfterMs,
    });
  // Not overdue yet by the staleness: left alone.
  expect((await sweep(60_000)).requeuedBy?.['webhook-deliveries']).toBeUndefined();
  expect(await queue.getJobState(webhookDeliveryJobId(job))).toBe('failed');

  expect((await sweep(0)).requeuedBy?.['webhook-deliveries']).toBe(1);
  const retried = await queue.getJob(webhookDeliveryJobId(job));
  expect(await retried!.getState()).toBe('waiting');
  expect(retried!.attemptsMade).toBe(0);
  expect(retried!.opts.attempts).toBe(schedule.length + 1);
  expect((await ctx.db.models.WebhookDelivery.findById(job.deliveryId).lean())?.status).toBe('pending');
  // Live now: the next sweep leaves it to that job.
  expect((await sweep(0)).requeuedBy?.['webhook-deliveries']).toBeUndefined();
});
