import type { Queue } from 'bullmq';
import { z } from 'zod';
import { defaultJobOptions, jobId } from './job-options';

/** Our subscription and test clock ids. */
export const SUBSCRIPTION_ID = /^sub_[0-9A-Z]{26}$/;
export const TEST_CLOCK_ID = /^clock_[0-9A-Z]{26}$/;

/**
 * The renewals queue's jobs, by name: `renew` one subscription (ids only: the worker re-reads the rest), the `sweep`
 * that finds what is due (run by a job scheduler), and a test clock's `advance`.
 */
export const renewalJobSchema = z.union([
  z.object({ subscriptionId: z.string().regex(SUBSCRIPTION_ID) }).strict(),
  z.object({ testClockId: z.string().regex(TEST_CLOCK_ID) }).strict(),
  z.object({}).strict(),
]);
export type RenewalJob = z.infer<typeof renewalJobSchema>;

export const RENEWAL_JOBS = { renew: 'renew', sweep: 'sweep', advanceClock: 'advance-clock' } as const;

/**
 * A completed renewal is removed at once: its id (subscription and period start) is then free for the sweep's next
 * look, while a job waiting or running with that id still collapses duplicates (two sweeps, a payment's outcome).
 */
export const renewalJobOptions = {
  ...defaultJobOptions({ attempts: 6, backoffDelayMs: 2_000 }),
  removeOnComplete: true,
} as const;

export function renewalJobId(subscriptionId: string, periodStart: Date): string {
  return jobId('renewal', `${subscriptionId}-${periodStart.getTime()}`);
}

/** BullMQ's largest priority (2^21); a lower number runs first. */
const MAX_PRIORITY = 2_097_152;

/**
 * One renewal job. `rank` (the sweep's: 1 for a company's first due subscription, 2 for its second, …) becomes the
 * job's priority, so a company's share of the queue is fair beyond one sweep too: another company's first renewal
 * of the next sweep (rank 1) runs before the 1,000th of a backlog queued earlier. Jobs without a rank (a payment's
 * outcome, a resume, a new card) are not prioritized, and BullMQ runs those first.
 */
export function renewalJob(subscription: { _id: string; currentPeriod: { start: Date } }, rank?: number) {
  return {
    name: RENEWAL_JOBS.renew,
    data: { subscriptionId: subscription._id },
    opts: {
      ...renewalJobOptions,
      jobId: renewalJobId(subscription._id, subscription.currentPeriod.start),
      ...(rank ? { priority: Math.min(rank, MAX_PRIORITY) } : {}),
    },
  };
}

export async function enqueueRenewal(
  queue: Queue<RenewalJob>,
  subscription: { _id: string; currentPeriod: { start: Date } },
): Promise<void> {
  const job = renewalJob(subscription);
  await releaseFailedRenewals(queue, [job.opts.jobId]);
  await queue.add(job.name, job.data, job.opts);
}

/**
 * BullMQ ignores an add whose job id is taken, and a renewal that ran out of attempts keeps its id among the failed
 * jobs (for ops to see): every later add for that period — the sweep's, a resume's, a new card's, a retry's — would be
 * dropped and the period never charged. So before adding, the failed renewals whose ids are about to be added are
 * removed (the subscription's records, not the job, hold what happened). Usually there are none: one count answers.
 */
export async function releaseFailedRenewals(queue: Queue<RenewalJob>, jobIds: readonly string[]): Promise<number> {
  if (jobIds.length === 0 || (await queue.getFailedCount()) === 0) return 0;
  const failed = new Set(await queue.getRanges(['failed'], 0, -1));
  const release = jobIds.filter((id) => failed.has(id));
  await Promise.all(release.map((id) => queue.remove(id)));
  return release.length;
}

export function clockAdvanceJobId(testClockId: string, frozenTime: Date): string {
  return jobId('clock', `${testClockId}-${frozenTime.getTime()}`);
}

export async function enqueueClockAdvance(queue: Queue<RenewalJob>, testClockId: string, frozenTime: Date) {
  await queue.add(
    RENEWAL_JOBS.advanceClock,
    { testClockId },
    { ...renewalJobOptions, jobId: clockAdvanceJobId(testClockId, frozenTime) },
  );
}

/** The rest of an advance that ran out of its job's time: a new job (its id unique: the last one is still running). */
export async function continueClockAdvance(queue: Queue<RenewalJob>, testClockId: string) {
  await queue.add(
    RENEWAL_JOBS.advanceClock,
    { testClockId },
    { ...renewalJobOptions, jobId: jobId('clock', `${testClockId}-more-${Date.now()}`) },
  );
}

/**
 * A subscription's period payment settled: its renewal runs now to record that (and to start the next attempt or
 * wait). Best effort: while a payment is in flight the sweep looks at its subscription every minute anyway.
 */
export async function renewAfterPayment(
  queue: Queue<RenewalJob>,
  payment: { _id: string; status: string; subscription?: { subscriptionId: string } },
): Promise<void> {
  if (!payment.subscription) return;
  const { subscriptionId } = payment.subscription;
  await queue
    .add(
      RENEWAL_JOBS.renew,
      { subscriptionId },
      { ...renewalJobOptions, jobId: jobId('renewal', `${subscriptionId}-${payment._id}-${payment.status}`) },
    )
    .catch(() => undefined);
}
