import { Queue, type ConnectionOptions } from 'bullmq';
import type { AuditJob } from './audit.queue';
import type { ChargeJob } from './charges.queue';
import type { MaintenanceJob } from './maintenance.queue';
import { QUEUE_NAMES } from './names';
import type { RefundJob } from './refunds.queue';
import type { StripeEventJob } from './stripe-events.queue';

/** Queue name → payload: a wrong payload for a queue does not compile. */
export interface QueuePayloads {
  [QUEUE_NAMES.charges]: ChargeJob;
  [QUEUE_NAMES.audit]: AuditJob;
  [QUEUE_NAMES.maintenance]: MaintenanceJob;
  [QUEUE_NAMES.stripeEvents]: StripeEventJob;
  [QUEUE_NAMES.refunds]: RefundJob;
}

export type Queues = { [N in keyof QueuePayloads]: Queue<QueuePayloads[N]> };

export function createQueues(connection: ConnectionOptions, prefix: string): Queues {
  return {
    charges: new Queue<ChargeJob>(QUEUE_NAMES.charges, { connection, prefix }),
    audit: new Queue<AuditJob>(QUEUE_NAMES.audit, { connection, prefix }),
    maintenance: new Queue<MaintenanceJob>(QUEUE_NAMES.maintenance, { connection, prefix }),
    'stripe-events': new Queue<StripeEventJob>(QUEUE_NAMES.stripeEvents, { connection, prefix }),
    refunds: new Queue<RefundJob>(QUEUE_NAMES.refunds, { connection, prefix }),
  };
}

export async function closeQueues(queues: Queues): Promise<void> {
  await Promise.all(Object.values(queues).map((queue: Queues[keyof Queues]) => queue.close()));
}

export { QUEUE_NAMES } from './names';
