import { createHash } from 'node:crypto';
import { z } from 'zod';
import { REFUND_REASONS } from './refund-status';

export const REFUND_ID = /^ref_[0-9A-Z]{26}$/;

/**
 * Validation of a refund request. `.strict()`: an unknown field is an error. The
 * amount is required (a full refund states the payment's amount): a refund
 * never takes "whatever is left" at the moment it happens to be processed.
 */
export function refundRequestSchema(maxAmount: number) {
  return z
    .object({
      amount: z
        .number({
          error: (issue) =>
            issue.input === undefined
              ? 'is required (minor units, e.g. cents)'
              : 'must be an integer number of minor units (cents)',
        })
        .int('must be an integer number of minor units (cents)')
        .positive('must be greater than 0')
        .max(maxAmount, `must be at most ${maxAmount}`),
      reason: z.enum(REFUND_REASONS, { error: `must be one of ${REFUND_REASONS.join(', ')}` }),
    })
    .strict();
}
export type RefundRequest = z.infer<ReturnType<typeof refundRequestSchema>>;

/** Same key + same fingerprint is a retry; another fingerprint is a conflicting reuse of the key. */
export function refundRequestHash(paymentId: string, request: RefundRequest): string {
  return createHash('sha256')
    .update(JSON.stringify([paymentId, request.amount, request.reason]))
    .digest('hex');
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * The refund's id, derived from the company, the Idempotency-Key and the request:
 * a request retried after a crash between reserving the money and writing the
 * refund finds its own reservation (and, the amount being part of the request,
 * reserved for the same amount). Shaped like our other ids: `ref_` + 26 Crockford
 * base32 characters (130 bits of SHA-256).
 */
export function refundIdFor(companyId: string, idempotencyKey: string, requestHash: string): string {
  const digest = createHash('sha256').update(`refund\0${companyId}\0${idempotencyKey}\0${requestHash}`).digest();
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += CROCKFORD[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
    if (out.length === 26) break;
  }
  return `ref_${out}`;
}
