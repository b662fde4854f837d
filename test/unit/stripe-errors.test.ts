import Stripe from 'stripe';
import { classifyStripeError } from '../../gateway/stripe-gateway';

type RawError = NonNullable<ConstructorParameters<typeof Stripe.errors.StripeError>[0]>;
const raw = (type: string, extra: Record<string, unknown> = {}): RawError =>
  ({ type, message: `${type} happened`, ...extra }) as RawError;

describe('which gateway failures are retried', () => {
  it.each([
    [
      'a declined card stops at once',
      new Stripe.errors.StripeCardError(
        raw('card_error', { code: 'card_declined', decline_code: 'insufficient_funds' }),
      ),
      'declined',
      'card_declined',
    ],
    ['a 5xx is retried', new Stripe.errors.StripeAPIError(raw('api_error')), 'transient', 'gateway_error'],
    [
      'a 429 is retried',
      new Stripe.errors.StripeRateLimitError(raw('rate_limit_error', { code: 'rate_limit' })),
      'transient',
      'rate_limited',
    ],
    [
      'a network failure is retried',
      new Stripe.errors.StripeConnectionError(raw('api_connection_error')),
      'transient',
      'gateway_unreachable',
    ],
    [
      'bad credentials stop at once',
      new Stripe.errors.StripeAuthenticationError(raw('authentication_error')),
      'permanent',
      'payment_config_invalid',
    ],
    [
      'an invalid request stops at once',
      new Stripe.errors.StripeInvalidRequestError(raw('invalid_request_error', { code: 'resource_missing' })),
      'permanent',
      'resource_missing',
    ],
    [
      'an already-confirmed intent is re-read',
      new Stripe.errors.StripeInvalidRequestError(
        raw('invalid_request_error', { code: 'payment_intent_unexpected_state' }),
      ),
      'unexpected_state',
      'payment_intent_unexpected_state',
    ],
    [
      // Built by the SDK's own factory, as a response turns into an error (stripe-node 23 makes a 409 a StripeAPIError).
      'a key still in use by an earlier attempt is retried later',
      Stripe.errors.StripeError.generate(raw('idempotency_error', { statusCode: 409 })),
      'transient',
      'idempotent_request_in_progress',
    ],
    [
      'a key reused for another request stops at once',
      Stripe.errors.StripeError.generate(raw('idempotency_error', { statusCode: 400 })),
      'permanent',
      'idempotency_conflict',
    ],
    [
      'an invalid request answered with a 409 stops at once, as before stripe-node 23',
      Stripe.errors.StripeError.generate(raw('invalid_request_error', { statusCode: 409, code: 'lock_timeout' })),
      'permanent',
      'lock_timeout',
    ],
    ['an unknown error is retried', new Error('socket hang up'), 'transient', 'gateway_unreachable'],
  ])('%s', (_label, error, kind, code) => {
    const classified = classifyStripeError(error);
    expect(classified.kind).toBe(kind);
    expect(classified.code).toBe(code);
  });

  it('keeps the decline code for the payment record', () => {
    const error = new Stripe.errors.StripeCardError(
      raw('card_error', { code: 'card_declined', decline_code: 'lost_card' }),
    );
    expect(classifyStripeError(error).declineCode).toBe('lost_card');
  });

  it('never repeats a credential in its message', () => {
    const error = new Stripe.errors.StripeAuthenticationError(
      raw('authentication_error', { message: 'Invalid API Key provided: sk_test_****1234' }),
    );
    expect(classifyStripeError(error).message).not.toContain('sk_test');
  });
});
