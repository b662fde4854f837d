/**
 * A payment's life: queued (intent recorded, job enqueued) → processing (a worker
 * owns it) → succeeded | requires_action | failed. requires_action waits for the
 * payer (3-D Secure); its outcome arrives later from Stripe.
 *
 * needs_attention: a retry could not reach the gateway account that may already have charged (its configuration
 * changed, lost its attestation, or the gateway refused the key), so nobody may call it failed: the money may have
 * moved. Not final: a webhook or the reconciliation sweep settles it with the gateway's own answer.
 */
export const PAYMENT_STATUSES = [
  'queued',
  'processing',
  'requires_action',
  'needs_attention',
  'succeeded',
  'failed',
] as const;
export type PaymentStatus = (typeof PAYMENT_STATUSES)[number];

/** Nothing more for the charge worker to do. */
export const SETTLED_PAYMENT_STATUSES: readonly PaymentStatus[] = [
  'requires_action',
  'needs_attention',
  'succeeded',
  'failed',
];

export function isSettled(status: PaymentStatus): boolean {
  return SETTLED_PAYMENT_STATUSES.includes(status);
}
