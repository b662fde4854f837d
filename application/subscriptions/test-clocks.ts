import { setTimeout as sleep } from 'node:timers/promises';
import type { Models } from '../../models';
import type { TestClockRecord } from '../../models/test-clock.model';
import { renewSubscription, type RenewDeps } from './renew-subscription';

/** How long one advance job runs before it hands the rest to a job of its own (the clock stays `advancing`). */
const ADVANCE_BUDGET_MS = 60_000;
const POLL_MS = 100;

export type AdvanceRequest =
  | { outcome: 'advancing'; clock: TestClockRecord; previousTime: Date }
  | { outcome: 'already_there'; clock: TestClockRecord }
  | { outcome: 'not_found' | 'busy' | 'backwards' };

/**
 * Moves a test clock forward: it refuses a time before its own and a clock already advancing, then records the new
 * time with status `advancing`. The caller queues the advance job, which runs what became due. Asking for the time the
 * clock already has is a repeat (a client's retry of an advance whose answer it never got): `already_there`, nothing
 * moves, so a retry learns its advance was taken instead of being told the clock went backwards.
 */
export async function requestClockAdvance(
  models: Pick<Models, 'TestClock'>,
  input: { companyId: string; testClockId: string; to: Date },
): Promise<AdvanceRequest> {
  const clock = await models.TestClock.findOne({ _id: input.testClockId, companyId: input.companyId }).lean();
  if (!clock) return { outcome: 'not_found' };
  if (input.to.getTime() === clock.frozenTime.getTime()) return { outcome: 'already_there', clock };
  if (clock.status === 'advancing') return { outcome: 'busy' };
  if (input.to <= clock.frozenTime) return { outcome: 'backwards' };
  const moved = await models.TestClock.findOneAndUpdate(
    { _id: clock._id, status: 'ready', frozenTime: clock.frozenTime },
    { $set: { frozenTime: input.to, status: 'advancing' } },
    { new: true },
  ).lean();
  return moved ? { outcome: 'advancing', clock: moved, previousTime: clock.frozenTime } : { outcome: 'busy' };
}

/**
 * Undoes a requested advance whose job could not be queued (nothing would ever finish it): the clock is `ready` at
 * its previous time again, so the caller's retry is taken.
 */
export async function abandonClockAdvance(
  models: Pick<Models, 'TestClock'>,
  advance: { clock: TestClockRecord; previousTime: Date },
): Promise<void> {
  await models.TestClock.updateOne(
    { _id: advance.clock._id, status: 'advancing', frozenTime: advance.clock.frozenTime },
    { $set: { status: 'ready', frozenTime: advance.previousTime } },
  );
}

/**
 * Runs everything due on a test clock up to its frozen time, as the renewal sweep would in real time: trial ends,
 * renewals, dunning retries, expiries, in time order, each at its own time (the clock's `processingTime`, which a
 * payment's outcome also runs at), round after round (a jump of a year renews twelve times), waiting for each
 * period's payment to settle. Then the clock is `ready` again: that is how its user knows it is done.
 */
export async function runClockAdvance(
  deps: RenewDeps,
  testClockId: string,
  options: { budgetMs?: number } = {},
): Promise<{ renewed: number; unfinished?: true }> {
  const clock = await deps.models.TestClock.findById(testClockId).lean();
  if (!clock || clock.status !== 'advancing') return { renewed: 0 };
  const deadline = Date.now() + (options.budgetMs ?? ADVANCE_BUDGET_MS);
  let renewed = 0;
  let processing = clock.processingTime;
  let lastLook = '';
  for (;;) {
    const due = await deps.models.Subscription.find(
      { testClockId, nextBillingAt: { $lte: clock.frozenTime } },
      { _id: 1, nextBillingAt: 1 },
    )
      .sort({ nextBillingAt: 1 })
      .limit(500)
      .lean();
    if (due.length === 0) break;
    // The earliest due time is what runs now (never going back).
    const earliest = due[0]!.nextBillingAt!;
    if (!processing || earliest > processing) {
      processing = earliest;
      await deps.models.TestClock.updateOne(
        { _id: testClockId, status: 'advancing', frozenTime: clock.frozenTime },
        { $set: { processingTime: processing } },
      );
    }
    let charging = 0;
    let settled = 0;
    for (const { _id, nextBillingAt } of due) {
      if (nextBillingAt! > processing) continue;
      const outcome = await renewSubscription(deps, _id, { now: processing });
      if (outcome === 'charging') charging += 1;
      else if (outcome === 'settled') settled += 1;
    }
    renewed += settled;
    // Due but with nothing to do twice in a row, the same ones at the same times (e.g. canceled meanwhile): done. (Once
    // is not enough: a payment's outcome may have moved a subscription on between the look and its run.)
    if (charging === 0 && settled === 0) {
      const look = due.map((s) => `${s._id}@${s.nextBillingAt!.getTime()}`).join();
      if (look === lastLook) break;
      lastLook = look;
    } else {
      lastLook = '';
    }
    // Out of this run's time: the caller queues the rest (the clock stays `advancing`, and its processing time tells
    // the next run where this one stopped).
    if (Date.now() > deadline) return { renewed, unfinished: true };
    // Payments in flight: their outcome comes from the charges worker.
    if (charging > 0) await sleep(POLL_MS);
  }
  await deps.models.TestClock.updateOne(
    { _id: testClockId, status: 'advancing', frozenTime: clock.frozenTime },
    { $set: { status: 'ready' }, $unset: { processingTime: 1 } },
  );
  return { renewed };
}
