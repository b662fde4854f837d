import { REFUND_ID, refundIdFor, refundRequestHash, refundRequestSchema } from '../../domain/refund-request';

const schema = refundRequestSchema(10_000_000);
const PAYMENT = 'pay_01JABCDEFGHJKMNPQRSTVWXYZ0';

describe('refund requests', () => {
  it('accepts an amount in minor units and one of Stripe’s reasons, nothing else', () => {
    expect(schema.parse({ amount: 500, reason: 'requested_by_customer' })).toEqual({
      amount: 500,
      reason: 'requested_by_customer',
    });
    const problems = (body: unknown) => {
      const result = schema.safeParse(body);
      return result.success ? [] : result.error.issues.map((i) => [i.path.join('.') || i.code, i.message]);
    };
    expect(problems({ reason: 'duplicate' })).toEqual([['amount', 'is required (minor units, e.g. cents)']]);
    expect(problems({ amount: 12.5, reason: 'duplicate' })).toEqual([
      ['amount', 'must be an integer number of minor units (cents)'],
    ]);
    expect(problems({ amount: 0, reason: 'duplicate' })).toEqual([['amount', 'must be greater than 0']]);
    expect(problems({ amount: 100, reason: 'changed_mind' })).toEqual([
      ['reason', 'must be one of duplicate, fraudulent, requested_by_customer'],
    ]);
    expect(problems({ amount: 100, reason: 'duplicate', note: 'patient asked' })).toEqual([
      ['unrecognized_keys', expect.stringContaining('note')],
    ]);
  });

  it('derives one refund id per company, key and request, shaped like our other ids', () => {
    const hash = refundRequestHash(PAYMENT, { amount: 500, reason: 'duplicate' });
    const id = refundIdFor('co_1', 'key-00000001', hash);
    expect(id).toMatch(REFUND_ID);
    expect(refundIdFor('co_1', 'key-00000001', hash)).toBe(id);
    expect(refundIdFor('co_2', 'key-00000001', hash)).not.toBe(id);
    expect(refundIdFor('co_1', 'key-00000002', hash)).not.toBe(id);
    const otherAmount = refundRequestHash(PAYMENT, { amount: 501, reason: 'duplicate' });
    expect(otherAmount).not.toBe(hash);
    expect(refundIdFor('co_1', 'key-00000001', otherAmount)).not.toBe(id);
  });
});
