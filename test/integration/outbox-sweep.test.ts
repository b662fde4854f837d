import type { Queue } from 'bullmq';
import { sweepOutbox } from '../../application/outbox/sweep-outbox';
import type { ChargeJob } from '../../queues/charges.queue';
import { chargeJobId } from '../../queues/charges.queue';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import { createTestContext, type TestContext } from '../support/harness';
import { insertPayment } from '../support/records';

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
