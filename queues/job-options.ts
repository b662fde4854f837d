import type { JobsOptions } from 'bullmq';

const DAY_SECONDS = 24 * 60 * 60;

/**
 * Retries with exponential backoff and jitter (so a Stripe or MongoDB outage is
 * not hammered in lockstep), a bounded completed set, and failed jobs kept long
 * enough for ops to look at and retry.
 */
export function defaultJobOptions(overrides: { attempts: number; backoffDelayMs: number }): JobsOptions {
  return {
    attempts: overrides.attempts,
    backoff: { type: 'exponential', delay: overrides.backoffDelayMs, jitter: 0.5 },
    removeOnComplete: { age: DAY_SECONDS, count: 10_000 },
    removeOnFail: { age: 30 * DAY_SECONDS, count: 50_000 },
  };
}

/** BullMQ refuses job ids containing ':' or made only of digits. */
export function jobId(kind: string, businessKey: string): string {
  const id = `${kind}-${businessKey}`;
  if (id.includes(':')) throw new Error(`job id may not contain ':' (${id})`);
  return id;
}
