import { randomUUID } from 'node:crypto';
import { bodyContainsCardNumber, containsCardNumber, requestLineContainsCardNumber } from '../../domain/card-number';
import { redactCardNumbers } from '../../platform/card-numbers';

describe('card numbers in request bodies', () => {
  it.each([
    ['a Visa test number', '4242424242424242'],
    ['grouped with spaces', '4242 4242 4242 4242'],
    ['grouped with dashes', '5555-5555-5555-4444'],
    ['an Amex number (15 digits)', '378282246310005'],
    ['inside other text', 'card: 4000056655665556 exp 12/30'],
    // Issue 20: every 13–19 digit window counts, so digits beside the number do not hide it; dots group too.
    ['with a digit after it', '4242424242424242 1'],
    ['with digits before it', '9 4242424242424242'],
    ['grouped with dots', '4242.4242.4242.4242'],
    ['grouped, then more digits', '4242 4242 4242 4242 17'],
    ['a 19-digit number', '6011000990139424000'.slice(0, 16) + ' 123'],
  ])('spots %s', (_label, text) => {
    expect(containsCardNumber(text)).toBe(true);
  });

  it.each([
    // Every 13–19 digit window counts (issue 20), so a longer run that fails Luhn may still hold one that passes.
    ['a 13-digit number failing Luhn', '4242424242421'],
    ['a run that starts unlike any card', '1111111111111111111'],
    ['too short', '424242424242'],
    ['a phone number', '+1 (555) 010-9999'],
    ['a Stripe id', 'pm_card_visa'],
    ['an amount', '1500'],
    ['a millisecond timestamp', 'order-1733360000000-a'],
    ['a UUID made of digits', '12345678-1234-4234-9234-123456789012'],
    ['digits inside a hex id', 'evt_4a4242424242424242b'],
  ])('ignores %s', (_label, text) => {
    expect(containsCardNumber(text)).toBe(false);
  });

  it('looks at nested values, numbers and keys', () => {
    expect(bodyContainsCardNumber({ a: { b: ['x', { c: '4242424242424242' }] } })).toBe(true);
    expect(bodyContainsCardNumber({ amount: 4242424242424242 })).toBe(true);
    expect(bodyContainsCardNumber({ '4242424242424242': true })).toBe(true);
    expect(bodyContainsCardNumber({ amount: 1500, currency: 'usd', paymentMethod: 'pm_card_visa' })).toBe(false);
  });

  it('counts a JSON integer too large to hold exactly (17–19 digits) as a possible card number', () => {
    expect(bodyContainsCardNumber(JSON.parse('{"amount": 4242424242424242424}'))).toBe(true);
    expect(bodyContainsCardNumber(JSON.parse('{"amount": 60110009901394240}'))).toBe(true);
    expect(bodyContainsCardNumber(JSON.parse('{"amount": 10000000, "n": 1e21}'))).toBe(false);
  });

  it('looks at the path, the query and the Idempotency-Key', () => {
    expect(requestLineContainsCardNumber('/v1/companies/co_1/payments/4242424242424242', undefined)).toBe(true);
    expect(requestLineContainsCardNumber('/v1/payments?card=4242%204242%204242%204242', undefined)).toBe(true);
    expect(requestLineContainsCardNumber('/v1/payments?card=4242+4242+4242+4242', undefined)).toBe(true);
    expect(requestLineContainsCardNumber('/v1/payments', 'charge-4242424242424242')).toBe(true);
    expect(requestLineContainsCardNumber('/v1/payments/pay_01J9ZC6X3M4242424242', 'demo-1733360000')).toBe(false);
  });

  it('redacts card numbers in text and leaves the rest', () => {
    expect(redactCardNumbers('/v1/payments/4242-4242-4242-4242/x?y=1')).toBe('/v1/payments/[REDACTED]/x?y=1');
    expect(redactCardNumbers('/v1/payments/pay_01ABC')).toBe('/v1/payments/pay_01ABC');
  });

  it('does not take random UUID idempotency keys for card numbers', () => {
    let refused = 0;
    for (let i = 0; i < 20_000; i += 1) if (requestLineContainsCardNumber('/v1/payments', randomUUID())) refused += 1;
    expect(refused).toBe(0);
  });
});
