import type { PaymentStatus } from './payment-status';

/**
 * What a Stripe PaymentIntent event means for our payment, and whether it may
 * move the payment. Pure: the stripe-events worker asks, then applies the
 * answer with a conditional single-document update.
 */
export const PAYMENT_INTENT_EVENT_TARGETS = {
  'payment_intent.processing': 'processing',
  'payment_intent.requires_action': 'requires_action',
  'payment_intent.succeeded': 'succeeded',
  'payment_intent.payment_failed': 'failed',
  'payment_intent.canceled': 'failed',
} as const satisfies Record<string, PaymentStatus>;
export type PaymentIntentEventType = keyof typeof PAYMENT_INTENT_EVENT_TARGETS;

/**
 * May a payment in `from` move to `to` on a Stripe event? Stripe delivers out of
 * order, so an event can describe an older state than the one we hold.
 *
 * - `succeeded` is final: money moved; nothing undoes it here (refunds are their own flow).
 * - `failed` may still become `succeeded` (a later attempt on the same PaymentIntent
 *   with another payment method succeeded). It does not go back to `processing` or
 *   `requires_action`: from state alone a late delivery of an earlier attempt cannot be
 *   told from a new attempt, and a new attempt ends in `succeeded` or `payment_failed` anyway.
 * - Among the unfinished states (`queued`, `processing`, `requires_action`) any move is
 *   allowed: our `processing` also means "a worker owns it", so a `requires_action` may
 *   legitimately follow it. A late one can move a payment back from `processing` to
 *   `requires_action`, but only until the final event arrives, which always wins.
 */
export const PAYMENT_TRANSITIONS: Readonly<Record<PaymentStatus, readonly PaymentStatus[]>> = {
  queued: ['processing', 'requires_action', 'succeeded', 'failed'],
  processing: ['requires_action', 'succeeded', 'failed'],
  requires_action: ['processing', 'succeeded', 'failed'],
  // Only the gateway's answer (a webhook, or the reconciliation sweep asking) settles it.
  needs_attention: ['processing', 'requires_action', 'succeeded', 'failed'],
  failed: ['succeeded'],
  succeeded: [],
};

export type TransitionDecision =
  | { apply: true; from: PaymentStatus; to: PaymentStatus }
  | { apply: false; reason: 'already_in_state' | 'stale_transition' };

export function decidePaymentTransition(from: PaymentStatus, event: PaymentIntentEventType): TransitionDecision {
  const to = PAYMENT_INTENT_EVENT_TARGETS[event];
  if (from === to) return { apply: false, reason: 'already_in_state' };
  if (!PAYMENT_TRANSITIONS[from].includes(to)) return { apply: false, reason: 'stale_transition' };
  return { apply: true, from, to };
}
