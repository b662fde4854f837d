import type { GatewayRefundStatus, RefundStatus } from './refund-status';

/**
 * May a refund in `from` move to what Stripe now reports (`to`)? Stripe delivers
 * events out of order, and a worker's answer can race a webhook, so the
 * decision is taken from our status alone and applied with a conditional update.
 *
 * - `queued` and `processing` are ours: whatever Stripe reports about the refund is newer.
 * - `pending` and `requires_action` wait on Stripe or the bank; either may follow the other,
 *   and any final status ends them.
 * - `succeeded` may still become `failed`: Stripe reports a refund that the card network
 *   could not return (closed account, expired card) as failed after it succeeded. The money
 *   comes back to the merchant, so the payment's refunded amount goes down again. A late
 *   `pending` or `requires_action` never undoes a success.
 * - `needs_attention` (an earlier attempt may have reached Stripe, a retry could not) takes whatever Stripe reports.
 * - `failed` and `canceled` are final.
 */
export const REFUND_TRANSITIONS: Readonly<Record<RefundStatus, readonly GatewayRefundStatus[]>> = {
  queued: ['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
  processing: ['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
  pending: ['requires_action', 'succeeded', 'failed', 'canceled'],
  requires_action: ['pending', 'succeeded', 'failed', 'canceled'],
  needs_attention: ['pending', 'requires_action', 'succeeded', 'failed', 'canceled'],
  succeeded: ['failed'],
  failed: [],
  canceled: [],
};

export type RefundTransitionDecision =
  | { apply: true; from: RefundStatus; to: GatewayRefundStatus }
  | { apply: false; reason: 'already_in_state' | 'stale_transition' };

export function decideRefundTransition(from: RefundStatus, to: GatewayRefundStatus): RefundTransitionDecision {
  if (from === to) return { apply: false, reason: 'already_in_state' };
  if (!REFUND_TRANSITIONS[from].includes(to)) return { apply: false, reason: 'stale_transition' };
  return { apply: true, from, to };
}
