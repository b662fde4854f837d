import { decideCharge, type ChargeDecision } from '../../domain/payment-outcome';
import type { GatewayIntent } from '../../domain/payment-gateway';

/** What the charge worker does with each answer the gateway can give about a confirmed PaymentIntent. */
const cases: Array<
  [string, Pick<GatewayIntent, 'status' | 'clientSecret' | 'nextActionType' | 'lastError'>, ChargeDecision]
> = [
  ['succeeded: recorded as succeeded', { status: 'succeeded' }, { action: 'record', outcome: { status: 'succeeded' } }],
  [
    '3-D Secure: recorded with what the app needs',
    { status: 'requires_action', clientSecret: 'pi_1_secret_2', nextActionType: 'redirect_to_url' },
    {
      action: 'record',
      outcome: { status: 'requires_action', clientSecret: 'pi_1_secret_2', nextActionType: 'redirect_to_url' },
    },
  ],
  [
    '3-D Secure without a next action type: Stripe.js handles it',
    { status: 'requires_action', clientSecret: 'pi_1_secret_2' },
    {
      action: 'record',
      outcome: { status: 'requires_action', clientSecret: 'pi_1_secret_2', nextActionType: 'use_stripe_sdk' },
    },
  ],
  [
    'a decline: failed with the decline reason',
    {
      status: 'requires_payment_method',
      lastError: {
        code: 'card_declined',
        declineCode: 'insufficient_funds',
        message: 'Your card has insufficient funds.',
      },
    },
    {
      action: 'record',
      outcome: {
        status: 'failed',
        failure: {
          code: 'card_declined',
          declineCode: 'insufficient_funds',
          message: 'Your card has insufficient funds.',
        },
      },
    },
  ],
  [
    'a payment method refused without an error: failed, payment_method_required',
    { status: 'requires_payment_method' },
    {
      action: 'record',
      outcome: {
        status: 'failed',
        failure: { code: 'payment_method_required', message: 'the payment method was not accepted' },
      },
    },
  ],
  [
    'canceled: failed, payment_canceled',
    { status: 'canceled' },
    {
      action: 'record',
      outcome: { status: 'failed', failure: { code: 'payment_canceled', message: 'the payment was canceled' } },
    },
  ],
  ['processing: left to the webhook or the sweep', { status: 'processing' }, { action: 'wait' }],
  ['requires_capture: left to the webhook or the sweep', { status: 'requires_capture' }, { action: 'wait' }],
  [
    'requires_confirmation: retried (the confirm did not take)',
    { status: 'requires_confirmation' },
    { action: 'retry', code: 'confirmation_pending' },
  ],
];

it.each(cases)('%s', (_name, intent, expected) => {
  expect(decideCharge(intent)).toEqual(expected);
});

it('decides every status the gateway can report', () => {
  const statuses: GatewayIntent['status'][] = [
    'succeeded',
    'requires_action',
    'requires_payment_method',
    'canceled',
    'processing',
    'requires_capture',
    'requires_confirmation',
  ];
  expect(new Set(cases.map(([, intent]) => intent.status))).toEqual(new Set(statuses));
});
