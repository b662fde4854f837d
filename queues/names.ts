/** Queue names. Never renamed once shipped: jobs in Redis are found by them. */
export const QUEUE_NAMES = {
  charges: 'charges',
  audit: 'audit',
  maintenance: 'maintenance',
  stripeEvents: 'stripe-events',
  refunds: 'refunds',
  renewals: 'renewals',
  invoices: 'invoices',
  webhookDeliveries: 'webhook-deliveries',
} as const;

export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

/** Every queue, in the order above. */
export const ALL_QUEUE_NAMES: readonly QueueName[] = Object.values(QUEUE_NAMES);

export function isQueueName(value: string): value is QueueName {
  return (ALL_QUEUE_NAMES as readonly string[]).includes(value);
}
