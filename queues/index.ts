import { Queue, type ConnectionOptions } from 'bullmq';
import type { AuditJob } from './audit.queue';
import type { ChargeJob } from './charges.queue';
import type { InvoiceJob } from './invoices.queue';
import type { MaintenanceJob } from './maintenance.queue';
import { ALL_QUEUE_NAMES, QUEUE_NAMES, type QueueName } from './names';
import type { RefundJob } from './refunds.queue';
import type { RenewalJob } from './renewals.queue';
import type { StripeEventJob } from './stripe-events.queue';
import type { WebhookDeliveryJob } from './webhook-deliveries.queue';

/** Queue name → payload: a wrong payload for a queue does not compile, nor does a queue name without its payload. */
export interface QueuePayloads {
  [QUEUE_NAMES.charges]: ChargeJob;
  [QUEUE_NAMES.audit]: AuditJob;
  [QUEUE_NAMES.maintenance]: MaintenanceJob;
  [QUEUE_NAMES.stripeEvents]: StripeEventJob;
  [QUEUE_NAMES.refunds]: RefundJob;
  [QUEUE_NAMES.renewals]: RenewalJob;
  [QUEUE_NAMES.invoices]: InvoiceJob;
  [QUEUE_NAMES.webhookDeliveries]: WebhookDeliveryJob;
}

export type Queues = { [N in QueueName]: Queue<QueuePayloads[N]> };

/** One queue per name in QUEUE_NAMES: a new name gets its queue here without another line. */
export function createQueues(connection: ConnectionOptions, prefix: string): Queues {
  const queues: Partial<Record<QueueName, Queue>> = {};
  for (const name of ALL_QUEUE_NAMES) queues[name] = new Queue(name, { connection, prefix });
  return queues as Queues;
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((queue: Queues[QueueName]) => queue.close()));
}

export { ALL_QUEUE_NAMES, QUEUE_NAMES, isQueueName, type QueueName } from './names';
