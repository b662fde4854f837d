import { createHash } from 'node:crypto';
import { z } from 'zod';
import { isIsoCurrency } from './money';
import { SERVICE_CATEGORIES } from './service-categories';

export const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]{8,255}$/;
/** Our payment id: `pay_` and a ULID. */
export const PAYMENT_ID = /^pay_[0-9A-Z]{26}$/;
/** An office id, as companies name their offices (also a part of webhook config ids). */
export const OFFICE_ID = /^[A-Za-z0-9_-]{1,64}$/;

/** Validation of a charge request. `.strict()`: an unknown field is an error, not ignored. */
export function paymentRequestSchema(maxAmount: number) {
  return z
    .object({
      amount: z
        // A missing amount keeps the generic "Required"; a value of the wrong type gets this sentence.
        .number({
          error: (issue) =>
            issue.input === undefined ? undefined : 'must be an integer number of minor units (cents)',
        })
        .int('must be an integer number of minor units (cents)')
        .positive('must be greater than 0')
        .max(maxAmount, `must be at most ${maxAmount}`),
      currency: z
        .string()
        .refine((c) => /^[a-zA-Z]{3}$/.test(c) && isIsoCurrency(c), 'must be a three-letter ISO 4217 currency code')
        .transform((c) => c.toLowerCase()),
      customer: z.string().regex(/^cus_[A-Za-z0-9]{1,64}$/, 'must be a Stripe customer id (cus_…)'),
      paymentMethod: z.string().regex(/^pm_[A-Za-z0-9_]{1,64}$/, 'must be a Stripe PaymentMethod id (pm_…)'),
      officeId: z.string().regex(OFFICE_ID, 'must be an office id').optional(),
      serviceCategory: z.enum(SERVICE_CATEGORIES).optional(),
    })
    .strict();
}
export type PaymentRequest = z.infer<ReturnType<typeof paymentRequestSchema>>;

/** Stable fingerprint of a request: same key + same fingerprint is a retry; another fingerprint is a conflict. */
export function paymentRequestHash(request: PaymentRequest): string {
  const canonical = JSON.stringify([
    request.amount,
    request.currency,
    request.customer,
    request.paymentMethod,
    request.officeId ?? null,
    request.serviceCategory ?? null,
  ]);
  return createHash('sha256').update(canonical).digest('hex');
}
