import type { JobsOptions, Queue } from 'bullmq';

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

const LIVE_JOB_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/**
 * Makes sure a job exists for work that is not finished: leaves a live job
 * alone, retries a finished one, adds a missing one. Returns whether it acted.
 * Callers may race (a replay and its joiners, the outbox sweep): a retry that
 * finds the job no longer finished, because another caller retried it first,
 * leaves it to that caller.
 */
export async function ensureJob(queue: Queue, jobId: string, add: () => Promise<void>): Promise<boolean> {
  const job = await queue.getJob(jobId);
  const state = job ? await job.getState() : 'missing';
  if (LIVE_JOB_STATES.has(state)) return false;
  if (!job || (state !== 'completed' && state !== 'failed')) {
    await add();
    return true;
  }
  try {
    await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
    return true;
  } catch (error) {
    const now = await queue.getJob(jobId);
    if (now && LIVE_JOB_STATES.has(await now.getState())) return false;
    throw error;
  }
}
