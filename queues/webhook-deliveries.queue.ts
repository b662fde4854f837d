import type { JobsOptions, Queue } from 'bullmq';
import { z } from 'zod';
import { jobId } from './job-options';

/** One delivery of one event to one endpoint: its id only (the event, endpoint and secret stay in MongoDB). */
export const webhookDeliveryJobSchema = z.strictObject({
  deliveryId: z.string().regex(/^dlv_[0-9A-Z]{26}$/),
  /** A redelivery asked for by the company (its count): a job of its own, the same event id. */
  redelivery: z.number().int().positive().optional(),
});
export type WebhookDeliveryJob = z.infer<typeof webhookDeliveryJobSchema>;

export const WEBHOOK_DELIVERY_JOB_NAME = 'deliver';
/** The backoff type whose delays come from WEBHOOK_RETRY_SCHEDULE_MS (workers/webhook-deliveries.worker.ts). */
export const WEBHOOK_BACKOFF = 'webhook-schedule';

const DAY_SECONDS = 24 * 60 * 60;

/** One attempt plus one per step of the retry schedule; BullMQ's custom backoff spaces them. */
export function webhookDeliveryJobOptions(retryScheduleMs: readonly number[]): JobsOptions {
  return {
    attempts: retryScheduleMs.length + 1,
    backoff: { type: WEBHOOK_BACKOFF },
    removeOnComplete: { age: DAY_SECONDS, count: 10_000 },
    removeOnFail: { age: 30 * DAY_SECONDS, count: 50_000 },
  };
}

export function webhookDeliveryJobId(job: WebhookDeliveryJob): string {
  return jobId('whd', job.redelivery ? `${job.deliveryId}-r${job.redelivery}` : job.deliveryId);
}

export async function enqueueWebhookDelivery(
  queue: Queue<WebhookDeliveryJob>,
  job: WebhookDeliveryJob,
  retryScheduleMs: readonly number[],
): Promise<void> {
  const data = webhookDeliveryJobSchema.parse(job);
  await queue.add(WEBHOOK_DELIVERY_JOB_NAME, data, {
    ...webhookDeliveryJobOptions(retryScheduleMs),
    jobId: webhookDeliveryJobId(data),
  });
}
