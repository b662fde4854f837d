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

export function renewalJob(subscription: { _id: string; currentPeriod: { start: Date } }) {
  return {
    name: RENEWAL_JOBS.renew,
    data: { subscriptionId: subscription._id },
    opts: { ...renewalJobOptions, jobId: renewalJobId(subscription._id, subscription.currentPeriod.start) },
  };
}

export async function enqueueRenewal(
  queue: Queue<RenewalJob>,
  subscription: { _id: string; currentPeriod: { start: Date } },
): Promise<void> {
  const job = renewalJob(subscription);
  await queue.add(job.name, job.data, job.opts);
}

export async function enqueueClockAdvance(queue: Queue<RenewalJob>, testClockId: string, frozenTime: Date) {
  await queue.add(
    RENEWAL_JOBS.advanceClock,
    { testClockId },
    { ...renewalJobOptions, jobId: jobId('clock', `${testClockId}-${frozenTime.getTime()}`) },
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
