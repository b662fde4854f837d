import type { Job, Queue } from 'bullmq';
import { renewSubscription, type RenewDeps, type RenewOutcome } from '../application/subscriptions/renew-subscription';
import { sweepRenewals, type SweepRenewalsResult } from '../application/subscriptions/sweep-renewals';
import { runClockAdvance } from '../application/subscriptions/test-clocks';
import { continueClockAdvance, RENEWAL_JOBS, type RenewalJob } from '../queues/renewals.queue';
import { JobFailedError, type JobContext } from './queue-worker';

export interface RenewalsDeps extends Omit<RenewDeps, 'logger'> {
  renewalsQueue: Queue<RenewalJob>;
}

export type RenewalResult = { outcome: RenewOutcome } | SweepRenewalsResult | { renewed: number };

/**
 * The renewals queue's processor: `renew` one subscription (application/subscriptions/renew-subscription.ts),
 * the scheduled `sweep` that queues what is due, and a test clock's `advance-clock`.
 */
export async function processRenewal(
  job: Job<RenewalJob>,
  deps: RenewalsDeps,
  context: JobContext,
): Promise<RenewalResult> {
  const { logger } = context;
  const data = job.data as { subscriptionId?: string; testClockId?: string };
  switch (job.name) {
    case RENEWAL_JOBS.renew:
      if (!data.subscriptionId) throw new JobFailedError('invalid_payload', 'a renew job names its subscription');
      return { outcome: await renewSubscription({ ...deps, logger }, data.subscriptionId) };
    case RENEWAL_JOBS.sweep:
      return sweepRenewals({ ...deps, logger });
    case RENEWAL_JOBS.advanceClock: {
      if (!data.testClockId) throw new JobFailedError('invalid_payload', 'an advance job names its test clock');
      const advanced = await runClockAdvance({ ...deps, logger }, data.testClockId);
      // A long advance (a year of many subscriptions) goes on in a job of its own, however long it takes.
      if (advanced.unfinished) await continueClockAdvance(deps.renewalsQueue, data.testClockId);
      return advanced;
    }
    default:
      throw new JobFailedError('unknown_renewal_job', `unknown renewal job ${job.name}`);
  }
}
