import { setTimeout as sleep } from 'node:timers/promises';
import type { Models } from '../../models';
import type { TestClockRecord } from '../../models/test-clock.model';
import { renewSubscription, type RenewDeps } from './renew-subscription';

/** How long one advance may take before its job is retried (the clock stays `advancing` meanwhile). */
const ADVANCE_BUDGET_MS = 60_000;
const POLL_MS = 100;

export type AdvanceRequest =
  { outcome: 'advancing'; clock: TestClockRecord } | { outcome: 'not_found' | 'busy' | 'backwards' };

/**
 * Moves a test clock forward: it refuses a time before its own and a clock already advancing, then records the new
 * time with status `advancing`. The caller queues the advance job, which runs what became due.
 */
export async function requestClockAdvance(
  models: Pick<Models, 'TestClock'>,
  input: { companyId: string; testClockId: string; to: Date },
): Promise<AdvanceRequest> {
  const clock = await models.TestClock.findOne({ _id: input.testClockId, companyId: input.companyId }).lean();
  if (!clock) return { outcome: 'not_found' };
  if (clock.status === 'advancing') return { outcome: 'busy' };
  if (input.to <= clock.frozenTime) return { outcome: 'backwards' };
  const moved = await models.TestClock.findOneAndUpdate(
    { _id: clock._id, status: 'ready', frozenTime: clock.frozenTime },
    { $set: { frozenTime: input.to, status: 'advancing' } },
    { new: true },
  ).lean();
  return moved ? { outcome: 'advancing', clock: moved } : { outcome: 'busy' };
}

/**
 * Runs everything due on a test clock up to its frozen time, as the renewal sweep would in real time: trial ends,
 * renewals, dunning retries, expiries, in order, round after round (a jump of a year renews twelve times), waiting
 * for each period's payment to settle. Then the clock is `ready` again: that is how its user knows it is done.
 */
export async function runClockAdvance(deps: RenewDeps, testClockId: string): Promise<{ renewed: number }> {
  const clock = await deps.models.TestClock.findById(testClockId).lean();
  if (!clock || clock.status !== 'advancing') return { renewed: 0 };
  const deadline = Date.now() + ADVANCE_BUDGET_MS;
  let renewed = 0;
  for (;;) {
    const due = await deps.models.Subscription.find(
      { testClockId, nextBillingAt: { $lte: clock.frozenTime } },
      { _id: 1 },
    )
      .sort({ nextBillingAt: 1 })
      .limit(500)
      .lean();
    if (due.length === 0) break;
    let charging = 0;
    let settled = 0;
    for (const { _id } of due) {
      const outcome = await renewSubscription(deps, _id, { now: clock.frozenTime });
      if (outcome === 'charging') charging += 1;
      else if (outcome === 'settled') settled += 1;
    }
    renewed += settled;
    // Due but with nothing to do (e.g. canceled meanwhile): done.
    if (charging === 0 && settled === 0) break;
    if (Date.now() > deadline) throw new Error(`test clock ${testClockId} did not finish advancing in time`);
    // Payments in flight: their outcome comes from the charges worker.
    if (charging > 0) await sleep(POLL_MS);
  }
  await deps.models.TestClock.updateOne(
    { _id: testClockId, status: 'advancing', frozenTime: clock.frozenTime },
    { $set: { status: 'ready' } },
  );
  return { renewed };
}
