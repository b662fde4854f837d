import { QUEUE_NAMES } from '../../queues/names';
import { enqueueRenewal, renewalJobId } from '../../queues/renewals.queue';
import { createTestContext, failedForGood, type TestContext } from '../support/harness';

/**
 * Issue 19 item 2: a renewal that ran out of attempts keeps its job id among the failed jobs; BullMQ drops any later add
 * under that id, so without care the period would never be charged again.
 */
let ctx: TestContext;

beforeAll(async () => {
  ctx = await createTestContext('renewal_jobs');
});

afterAll(async () => {
  await ctx.close();
});

it('a renewal job that failed for good does not block the next add for the same period: the sweep queues it again', async () => {
  const subscription = {
    _id: 'sub_01M91ZDQGV2AFJ5G4NT4TN98Z4',
    currentPeriod: { start: new Date('2027-01-01T12:00:00Z') },
  };
  const id = renewalJobId(subscription._id, subscription.currentPeriod.start);
  const queue = ctx.queues[QUEUE_NAMES.renewals];
  await failedForGood(ctx, queue, id, () => enqueueRenewal(queue, subscription));

  await enqueueRenewal(queue, subscription);
  expect(await queue.getJobState(id)).toBe('waiting');
  expect(await queue.getFailedCount()).toBe(0);
});
