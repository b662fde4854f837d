/**
 * A payment's life: queued (intent recorded, job enqueued) → processing (a worker
 * owns it) → succeeded | requires_action | failed. requires_action waits for the
 * payer (3-D Secure); its outcome arrives later from Stripe.
 */
export const PAYMENT_STATUSES = ['queued', 'processing', 'requires_action', 'succeeded', 'failed'] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/** Nothing more for the charge worker to do. */
export const SETTLED_PAYMENT_STATUSES: readonly PaymentStatus[] = ['requires_action', 'succeeded', 'failed'];

export function isSettled(status: PaymentStatus): boolean {
  return SETTLED_PAYMENT_STATUSES.includes(status);
}
