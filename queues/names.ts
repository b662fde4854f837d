/** Queue names. Never renamed once shipped: jobs in Redis are found by them. */
export const QUEUE_NAMES = {
  charges: 'charges',
  audit: 'audit',
  maintenance: 'maintenance',
  stripeEvents: 'stripe-events',
  refunds: 'refunds',
} as const;
