import type { Queue } from 'bullmq';
import { z } from 'zod';
import { STRIPE_EVENT_ID } from '../domain/stripe-ids';
import { defaultJobOptions, jobId } from './job-options';

/** The id of a stored, verified event only: the worker reads the (encrypted) payload from the inbox in MongoDB. */
export const stripeEventJobSchema = z.object({ eventId: z.string().regex(STRIPE_EVENT_ID) }).strict();
export type StripeEventJob = z.infer<typeof stripeEventJobSchema>;

export const STRIPE_EVENT_JOB_NAME = 'apply';

// A MongoDB blip must not lose an event; Stripe itself also redelivers for three days.
export const stripeEventJobOptions = defaultJobOptions({ attempts: 10, backoffDelayMs: 1_000 });

/**
 * `replays` is the inbox row's replay count: each replay gets a job of its own (`…-replay-<n>`), because the
 * job that processed the event before may still be kept as completed, and would swallow an add with its id.
 */
export function stripeEventJobId(eventId: string, replays = 0): string {
  return jobId('stripe-event', replayKey(eventId, replays));
}

/** One processing of a stored event: its id, or its id and replay number. Job and audit event ids derive from it. */
export function replayKey(eventId: string, replays = 0): string {
  return replays > 0 ? `${eventId}-replay-${replays}` : eventId;
}

export async function enqueueStripeEvent(
  queue: Queue<StripeEventJob>,
  job: StripeEventJob,
  replays = 0,
): Promise<void> {
  const data = stripeEventJobSchema.parse(job);
  await queue.add(STRIPE_EVENT_JOB_NAME, data, {
    ...stripeEventJobOptions,
    jobId: stripeEventJobId(data.eventId, replays),
  });
}
