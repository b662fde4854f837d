import { z } from 'zod';
import { ApiError } from '../../api/errors';
import { parse } from '../../api/validation';
import { attestationSchema, companyPaymentConfigSchema } from '../../domain/payment-config-input';
import { paymentRequestSchema } from '../../domain/payment-request';
import { refundRequestSchema } from '../../domain/refund-request';

/** The `details` of the 400 a client gets for `value`. */
function detailsOf(schema: z.ZodType, value: unknown): Array<{ field: string; message: string }> {
  try {
    parse(schema, value);
  } catch (error) {
    if (error instanceof ApiError) return error.details ?? [];
    throw error;
  }
  throw new Error('expected a validation error');
}

const payment = paymentRequestSchema(100_000);
const good = { amount: 100, currency: 'usd', customer: 'cus_abc', paymentMethod: 'pm_abc' };

// The sentences clients have always read in details[].message (zod 3's wording);
// a zod upgrade must not change them.
describe('validation messages a client reads', () => {
  it('names a missing field "Required" and a wrong type by both types', () => {
    expect(detailsOf(payment, { ...good, customer: undefined })).toEqual([{ field: 'customer', message: 'Required' }]);
    expect(detailsOf(payment, { ...good, customer: 3 })).toEqual([
      { field: 'customer', message: 'Expected string, received number' },
    ]);
    expect(detailsOf(payment, null)).toEqual([{ field: '(body)', message: 'Expected object, received null' }]);
    expect(detailsOf(payment, [])).toEqual([{ field: '(body)', message: 'Expected object, received array' }]);
  });

  it("keeps each schema's own sentences for amounts, with 'Required' when the charge amount is missing", () => {
    expect(detailsOf(payment, { ...good, amount: '1' })).toEqual([
      { field: 'amount', message: 'must be an integer number of minor units (cents)' },
    ]);
    expect(detailsOf(payment, { ...good, amount: undefined })).toEqual([{ field: 'amount', message: 'Required' }]);
    const refund = refundRequestSchema(5_000);
    expect(detailsOf(refund, { reason: 'duplicate' })).toEqual([
      { field: 'amount', message: 'is required (minor units, e.g. cents)' },
    ]);
    expect(detailsOf(refund, { amount: 1, reason: 'bad' })).toEqual([
      { field: 'reason', message: 'must be one of duplicate, fraudulent, requested_by_customer' },
    ]);
  });

  it('lists the accepted values of an enum, a literal and a discriminator', () => {
    expect(detailsOf(companyPaymentConfigSchema, { mode: 'x' })).toEqual([
      { field: 'mode', message: "Invalid enum value. Expected 'company' | 'office' | 'hybrid', received 'x'" },
    ]);
    expect(detailsOf(companyPaymentConfigSchema, { mode: 3 })).toEqual([
      { field: 'mode', message: "Expected 'company' | 'office' | 'hybrid', received number" },
    ]);
    expect(detailsOf(companyPaymentConfigSchema, { mode: 'company', gateway: 'adyen' })).toEqual([
      { field: 'gateway', message: 'Invalid literal value, expected "stripe"' },
    ]);
    expect(detailsOf(attestationSchema, { status: 'x' })).toEqual([
      { field: 'status', message: "Invalid discriminator value. Expected 'baa_signed' | 'exempt_1179'" },
    ]);
  });

  it('words sizes, patterns and formats as before', () => {
    const query = z
      .object({
        limit: z.coerce.number().int().min(1).max(100).default(25),
        after: z
          .string()
          .regex(/^pay_[0-9A-Z]{26}$/)
          .optional(),
        from: z.string().datetime({ offset: true }).optional(),
      })
      .strict();
    expect(detailsOf(query, { limit: '0' })).toEqual([
      { field: 'limit', message: 'Number must be greater than or equal to 1' },
    ]);
    expect(detailsOf(query, { limit: '1000' })).toEqual([
      { field: 'limit', message: 'Number must be less than or equal to 100' },
    ]);
    expect(detailsOf(query, { limit: '1.5' })).toEqual([
      { field: 'limit', message: 'Expected integer, received float' },
    ]);
    expect(detailsOf(query, { limit: 'abc' })).toEqual([{ field: 'limit', message: 'Expected number, received nan' }]);
    expect(detailsOf(query, { after: 'x' })).toEqual([{ field: 'after', message: 'Invalid' }]);
    expect(detailsOf(query, { from: 'x' })).toEqual([{ field: 'from', message: 'Invalid datetime' }]);
    expect(detailsOf(query, { other: 1 })).toEqual([{ field: 'other', message: 'is not an accepted field' }]);
    expect(
      detailsOf(companyPaymentConfigSchema, { mode: 'company', credentials: { webhookSigningSecrets: [] } }),
    ).toEqual([{ field: 'credentials.webhookSigningSecrets', message: 'Array must contain at least 1 element(s)' }]);
    expect(detailsOf(attestationSchema, { status: 'baa_signed', reference: '', signedOn: '2024-01-01' })).toEqual([
      { field: 'reference', message: 'String must contain at least 1 character(s)' },
    ]);
  });
});
