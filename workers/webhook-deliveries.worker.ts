import { Worker, type Job } from 'bullmq';
import {
  deliverWebhook,
  DeliveryFailedError,
  type DeliverDeps,
  type DeliverOutcome,
} from '../application/outgoing-webhooks/deliver-webhook';
import { retryDelayMs } from '../domain/webhook-endpoint';
import { QUEUE_NAMES } from '../queues/names';
import { WEBHOOK_BACKOFF, webhookDeliveryJobSchema, type WebhookDeliveryJob } from '../queues/webhook-deliveries.queue';
import {
  jobAttempt,
  JobFailedError,
  logJobLifecycle,
  runJob,
  type JobContext,
  type QueueWorkerOptions,
} from './queue-worker';

export type WebhookDeliveriesDeps = DeliverDeps;

/**
 * One attempt to deliver one event to one endpoint (application/outgoing-webhooks/deliver-webhook.ts). A failed
 * attempt throws and BullMQ retries it on the WEBHOOK_RETRY_SCHEDULE_MS schedule; the delivery record holds every
 * attempt.
 */
export async function processWebhookDelivery(
  job: Job<WebhookDeliveryJob>,
  deps: WebhookDeliveriesDeps,
  context: JobContext,
): Promise<DeliverOutcome> {
  const parsed = webhookDeliveryJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid webhook delivery job payload');
  const attempt = jobAttempt(job);
  try {
    return await deliverWebhook(deps, {
      deliveryId: parsed.data.deliveryId,
      attempt,
      finalAttempt: attempt >= (job.opts.attempts ?? 1),
      redelivery: parsed.data.redelivery !== undefined,
    });
  } catch (error) {
    if (error instanceof DeliveryFailedError) {
      context.logger.info({ reason: error.code, attempt }, 'webhook delivery attempt failed');
    }
    throw error;
  }
}

/** A worker whose retries follow the configured schedule (BullMQ custom backoff), not BullMQ's exponential one. */
export function createWebhookDeliveriesWorker(
  deps: WebhookDeliveriesDeps & QueueWorkerOptions & { stalledCheckMs?: number },
): Worker<WebhookDeliveryJob, DeliverOutcome> {
  const name = QUEUE_NAMES.webhookDeliveries;
  const worker = new Worker<WebhookDeliveryJob, DeliverOutcome>(
    name,
    (job) => runJob(name, job, processWebhookDelivery, deps),
    {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: deps.concurrency,
      // A delivery whose worker died (its lock not renewed) goes back to waiting and is sent again, same webhook-id.
      ...(deps.stalledCheckMs ? { lockDuration: deps.stalledCheckMs, stalledInterval: deps.stalledCheckMs } : {}),
      settings: {
        backoffStrategy: (attemptsMade: number, type?: string) =>
          type === WEBHOOK_BACKOFF ? retryDelayMs(deps.retryScheduleMs, attemptsMade) : 1_000,
      },
    },
  );
  logJobLifecycle(worker, deps.logger);
  return worker;
}
