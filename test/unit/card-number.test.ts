import { bodyContainsCardNumber, containsCardNumber } from '../../domain/card-number';

describe('card numbers in request bodies', () => {
  it.each([
    ['a Visa test number', '4242424242424242'],
    ['grouped with spaces', '4242 4242 4242 4242'],
    ['grouped with dashes', '5555-5555-5555-4444'],
    ['an Amex number (15 digits)', '378282246310005'],
    ['inside other text', 'card: 4000056655665556 exp 12/30'],
  ])('spots %s', (_label, text) => {
    expect(containsCardNumber(text)).toBe(true);
  });

  it.each([
    ['a number failing Luhn', '4242424242424241'],
    ['too short', '424242424242'],
    ['a phone number', '+1 (555) 010-9999'],
    ['a Stripe id', 'pm_card_visa'],
    ['an amount', '1500'],
  ])('ignores %s', (_label, text) => {
    expect(containsCardNumber(text)).toBe(false);
  });

  it('looks at nested values, numbers and keys', () => {
    expect(bodyContainsCardNumber({ a: { b: ['x', { c: '4242424242424242' }] } })).toBe(true);
    expect(bodyContainsCardNumber({ amount: 4242424242424242 })).toBe(true);
    expect(bodyContainsCardNumber({ '4242424242424242': true })).toBe(true);
    expect(bodyContainsCardNumber({ amount: 1500, currency: 'usd', paymentMethod: 'pm_card_visa' })).toBe(false);
  });
});
