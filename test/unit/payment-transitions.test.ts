import {
  decidePaymentTransition,
  PAYMENT_INTENT_EVENT_TARGETS,
  type PaymentIntentEventType,
} from '../../domain/payment-transitions';
import type { PaymentStatus } from '../../domain/payment-status';

const EVENTS: PaymentIntentEventType[] = [
  'payment_intent.processing',
  'payment_intent.requires_action',
  'payment_intent.succeeded',
  'payment_intent.payment_failed',
  'payment_intent.canceled',
];

// Rows: our payment's status. Columns: the event, in the order above.
// apply = the payment moves; same = already there; stale = it would move backwards.
const TABLE: Record<PaymentStatus, Array<'apply' | 'same' | 'stale'>> = {
  //               processing requires_action succeeded payment_failed canceled
  queued: /*    */ ['apply', 'apply', 'apply', 'apply', 'apply'],
  processing: /**/ ['same', 'apply', 'apply', 'apply', 'apply'],
  requires_action: ['apply', 'same', 'apply', 'apply', 'apply'],
  needs_attention: ['apply', 'apply', 'apply', 'apply', 'apply'],
  succeeded: /* */ ['stale', 'stale', 'same', 'stale', 'stale'],
  failed: /*    */ ['stale', 'stale', 'apply', 'same', 'same'],
};

describe('payment transitions on Stripe events', () => {
  it('maps each PaymentIntent event to the status it reports', () => {
    expect(PAYMENT_INTENT_EVENT_TARGETS).toEqual({
      'payment_intent.processing': 'processing',
      'payment_intent.requires_action': 'requires_action',
      'payment_intent.succeeded': 'succeeded',
      'payment_intent.payment_failed': 'failed',
      'payment_intent.canceled': 'failed',
    });
  });

  for (const [from, row] of Object.entries(TABLE) as Array<[PaymentStatus, Array<'apply' | 'same' | 'stale'>]>) {
    row.forEach((expected, column) => {
      const event = EVENTS[column]!;
      it(`${from} + ${event} → ${expected}`, () => {
        const decision = decidePaymentTransition(from, event);
        if (expected === 'apply') {
          expect(decision).toEqual({ apply: true, from, to: PAYMENT_INTENT_EVENT_TARGETS[event] });
        } else {
          expect(decision).toEqual({
            apply: false,
            reason: expected === 'same' ? 'already_in_state' : 'stale_transition',
          });
        }
      });
    });
  }

  it('never undoes a success, and lets a failed payment still succeed (money moved)', () => {
    expect(decidePaymentTransition('succeeded', 'payment_intent.payment_failed')).toMatchObject({ apply: false });
    expect(decidePaymentTransition('failed', 'payment_intent.succeeded')).toMatchObject({ apply: true });
  });
});
