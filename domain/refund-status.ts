/**
 * A refund's life: queued (intent recorded, money reserved on the payment, job
 * enqueued) → processing (a worker owns it) → whatever Stripe says: pending,
 * requires_action, succeeded, failed or canceled. pending and requires_action
 * wait on Stripe (or the payer's bank); their outcome arrives as a webhook.
 * needs_attention: a retry could not reach the gateway account an earlier attempt may already have refunded through
 * (configuration changed, attestation gone, key refused). The money stays held; only the gateway's answer (a
 * webhook, or the reconciliation sweep asking) settles it.
 */
export const REFUND_STATUSES = [
  'queued',
  'processing',
  'pending',
  'requires_action',
  'needs_attention',
  'succeeded',
  'failed',
  'canceled',
] as const;
export type RefundStatus = (typeof REFUND_STATUSES)[number];

/** What Stripe's Refund.status can say. */
export const GATEWAY_REFUND_STATUSES = ['pending', 'requires_action', 'succeeded', 'failed', 'canceled'] as const;
export type GatewayRefundStatus = (typeof GATEWAY_REFUND_STATUSES)[number];

export function isGatewayRefundStatus(value: unknown): value is GatewayRefundStatus {
  return typeof value === 'string' && (GATEWAY_REFUND_STATUSES as readonly string[]).includes(value);
}

/** Stripe's refund reasons (sent to Stripe as they are; `fraudulent` also blocks the card in Radar). */
export const REFUND_REASONS = ['duplicate', 'fraudulent', 'requested_by_customer'] as const;
export type RefundReason = (typeof REFUND_REASONS)[number];

/** The worker has handed the refund to Stripe (or given up): nothing more for it to do. */
export function isRefundHandedOver(status: RefundStatus): boolean {
  return status !== 'queued' && status !== 'processing';
}

/**
 * What a refund in this status does to its payment's money: `held` keeps its
 * amount reserved (in flight), `refunded` also counts it as refunded, `released`
 * gives the reservation back (Stripe failed or canceled it).
 */
export function refundLedgerEffect(status: RefundStatus): 'held' | 'refunded' | 'released' {
  if (status === 'succeeded') return 'refunded';
  if (status === 'failed' || status === 'canceled') return 'released';
  return 'held';
}
