import { paymentRequestHash, paymentRequestSchema } from '../../domain/payment-request';

const schema = paymentRequestSchema(1_000_000);
const valid = { amount: 2_500, currency: 'USD', customer: 'cus_A1', paymentMethod: 'pm_card_visa' };

describe('payment request validation', () => {
  it('accepts a valid request and normalises the currency for Stripe', () => {
    expect(schema.parse(valid)).toEqual({ ...valid, currency: 'usd' });
  });

  it('reports one problem per bad field', () => {
    const result = schema.safeParse({ amount: 1.5, currency: 'usdollar', customer: 'bob', extra: true });
    expect(result.success).toBe(false);
    const paths = result.error!.issues.map((i) => (i.code === 'unrecognized_keys' ? i.keys.join() : i.path.join('.')));
    expect(paths.sort()).toEqual(['amount', 'currency', 'customer', 'extra', 'paymentMethod']);
  });

  it('fingerprints requests: the same content hashes the same, any change hashes differently', () => {
    const a = schema.parse(valid);
    expect(paymentRequestHash(a)).toBe(paymentRequestHash(schema.parse({ ...valid, currency: 'usd' })));
    expect(paymentRequestHash(a)).not.toBe(paymentRequestHash({ ...a, amount: 2_501 }));
    expect(paymentRequestHash(a)).not.toBe(paymentRequestHash({ ...a, officeId: 'off_1' }));
  });
});
