import type { GatewayIntent } from './payment-gateway';

/** Why a payment failed, as the payer's app is told: a gateway code, an optional decline code, Stripe's sentence. */
export interface PaymentFailureReason {
  code: string;
  declineCode?: string;
  message: string;
}

/** What the gateway said about a payment, whoever heard it: the charge worker's call or a Stripe event. */
export type PaymentOutcome =
  | { status: 'processing' }
  | { status: 'succeeded' }
  | { status: 'failed'; failure: PaymentFailureReason }
  | { status: 'requires_action'; clientSecret?: string; nextActionType: string };

/** A retry could not reach the gateway account that may already have charged: not failed, not final. */
export interface AttentionOutcome {
  status: 'needs_attention';
  attention: { code: string; message: string };
}

/** An outcome that ends a charge attempt. */
export type SettledOutcome = Exclude<PaymentOutcome, { status: 'processing' }> | AttentionOutcome;

/**
 * What the charge worker does with a PaymentIntent after confirming it (or finding it confirmed):
 * - `record`: the gateway decided (succeeded, failed, or 3-D Secure needed); record that outcome;
 * - `wait`: the gateway has not decided yet (processing, requires_capture); its webhook or the sweep settles it;
 * - `retry`: the confirmation did not take yet; a transient error for BullMQ to retry.
 */
export type ChargeDecision =
  | { action: 'record'; outcome: SettledOutcome }
  | { action: 'wait' }
  | { action: 'retry'; code: 'confirmation_pending' };

export function decideCharge(
  intent: Pick<GatewayIntent, 'status' | 'clientSecret' | 'nextActionType' | 'lastError'>,
): ChargeDecision {
  switch (intent.status) {
    case 'succeeded':
      return { action: 'record', outcome: { status: 'succeeded' } };
    case 'requires_action':
      return {
        action: 'record',
        outcome: {
          status: 'requires_action',
          ...(intent.clientSecret ? { clientSecret: intent.clientSecret } : {}),
          nextActionType: intent.nextActionType ?? 'use_stripe_sdk',
        },
      };
    case 'requires_payment_method':
    case 'canceled':
      return {
        action: 'record',
        outcome: {
          status: 'failed',
          failure:
            intent.lastError ??
            (intent.status === 'canceled'
              ? { code: 'payment_canceled', message: 'the payment was canceled' }
              : { code: 'payment_method_required', message: 'the payment method was not accepted' }),
        },
      };
    case 'processing':
    case 'requires_capture':
      return { action: 'wait' };
    case 'requires_confirmation':
      return { action: 'retry', code: 'confirmation_pending' };
  }
}
