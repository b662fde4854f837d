import { z } from 'zod';

/** When to retry a failed renewal, and what the subscription becomes when the retries run out. */
export interface DunningPolicy {
  /** Days after the period's first failure, one per retry. */
  retryDelaysDays: readonly number[];
  finalState: 'unpaid' | 'canceled';
}

/** Four retries over a week, then unpaid: the open period stays collectable when a new card arrives. */
export const DEFAULT_DUNNING_POLICY: DunningPolicy = Object.freeze({
  retryDelaysDays: Object.freeze([1, 3, 5, 7]),
  finalState: 'unpaid',
});

export const dunningPolicySchema = z
  .object({
    retryDelaysDays: z
      .array(z.number().int().positive().max(60))
      .min(1)
      .max(10)
      .refine((delays) => delays.every((d, i) => i === 0 || d > delays[i - 1]!), 'must be strictly increasing'),
    finalState: z.enum(['unpaid', 'canceled']),
  })
  .strict() satisfies z.ZodType<DunningPolicy>;

/**
 * Stripe's non-retryable codes: incorrect_number, lost_card, pickup_card, stolen_card,
 * revocation_of_authorization, revocation_of_all_authorizations, authentication_required,
 * highest_risk_level, and expired cards (code or decline_code 'expired_card'). Retrying them
 * cannot succeed and card networks penalise merchants who keep trying.
 */
export const HARD_DECLINE_CODES: readonly string[] = Object.freeze([
  'incorrect_number',
  'lost_card',
  'pickup_card',
  'stolen_card',
  'revocation_of_authorization',
  'revocation_of_all_authorizations',
  'authentication_required',
  'highest_risk_level',
  'expired_card',
  'do_not_try_again',
  'invalid_account',
  'stop_payment_order',
  'fraudulent',
  'card_not_supported',
  'currency_not_supported',
]);
const HARD_DECLINES: ReadonlySet<string> = new Set(HARD_DECLINE_CODES);

/** Checks both: Stripe puts the reason in `code` (expired_card) or in `decline_code` under card_declined. */
export function isHardDecline(failure: { code: string; declineCode?: string }): boolean {
  return (
    HARD_DECLINES.has(failure.code) || (failure.declineCode !== undefined && HARD_DECLINES.has(failure.declineCode))
  );
}

/**
 * Failures on the merchant's side, not the payer's: no configuration (or none for the office), credentials the gateway
 * refuses, no BAA / section 1179 attestation, the configuration now pointing at another gateway account, an object
 * missing on the gateway account (a customer or payment method saved under another one), crypto-shredded data. They
 * use no dunning attempt and never end a subscription (docs/billing-rules.md, "Dunning").
 */
export const MERCHANT_SIDE_CODES: readonly string[] = Object.freeze([
  'payment_config_missing',
  'office_payment_config_missing',
  'office_account_incomplete',
  'payment_config_invalid',
  'gateway_not_attested',
  'gateway_account_changed',
  'resource_missing',
  'data_shredded',
]);
const MERCHANT_SIDE: ReadonlySet<string> = new Set(MERCHANT_SIDE_CODES);

export function isMerchantSideFailure(failure: { code: string }): boolean {
  return MERCHANT_SIDE.has(failure.code);
}

export type DunningStep =
  /** attempt: the number of the attempt to make, counting the first (the first retry is attempt 2). */
  | { action: 'retry'; at: Date; attempt: number }
  /** Until: when the policy's window ends (its last retry would have been due); then its end state applies. */
  | { action: 'wait_for_payment_method'; until: Date }
  | { action: 'give_up'; endState: 'unpaid' | 'canceled' };

export const DAY_MS = 86_400_000;

/**
 * After the `failedAttempts`-th failed attempt (1 = the first failure) of a period, whose first
 * failure was at firstFailureAt: retries at firstFailureAt + delays[i] days; a hard decline waits
 * for a new payment method; when delays are exhausted, give up with the policy's end state. The
 * policy is read at the moment of asking (the caller passes the current one).
 *
 * Delays count from the first failure, not the previous attempt, so a late retry does not push the
 * rest back. Days are 24 hours: retries are not billing boundaries, no local calendar is needed.
 * Exhausted delays give up even after a hard decline, so waiting for a card is never open-ended
 * past the policy: a hard decline waits for a new card until the window ends (when the last retry
 * would have been due). `failedAttempts` counts the scheduled attempts only: the attempt a new card makes at once is
 * one more chance and uses none of the retries (docs/billing-rules.md, "Dunning").
 *
 * `lastFailureAt`, when the latest attempt was declined: a retry whose time is not after it is passed over, not made
 * at once. A new card declined late in the window, or a retry that ran late, is followed by the next retry still
 * ahead, never by a burst of charges on one card; with none ahead, the period is given up.
 */
export function nextDunningStep(
  policy: DunningPolicy,
  input: {
    failedAttempts: number;
    firstFailureAt: Date;
    lastFailureAt?: Date;
    failure: { code: string; declineCode?: string };
  },
): DunningStep {
  const parsed = dunningPolicySchema.safeParse(policy);
  if (!parsed.success) throw new RangeError(`invalid dunning policy: ${parsed.error.issues[0]?.message ?? ''}`);
  const { failedAttempts, firstFailureAt, failure } = input;
  if (!Number.isSafeInteger(failedAttempts) || failedAttempts < 1) {
    throw new RangeError(`failedAttempts must be an integer ≥ 1, got ${failedAttempts}`);
  }
  if (!(firstFailureAt instanceof Date) || Number.isNaN(firstFailureAt.getTime())) {
    throw new RangeError('firstFailureAt is not a valid date');
  }

  const delays = policy.retryDelaysDays;
  const retryAt = (index: number) => firstFailureAt.getTime() + delays[index]! * DAY_MS;
  let index = failedAttempts - 1;
  while (index < delays.length && input.lastFailureAt && retryAt(index) <= input.lastFailureAt.getTime()) index += 1;
  if (index >= delays.length) return { action: 'give_up', endState: policy.finalState };
  if (isHardDecline(failure)) {
    return { action: 'wait_for_payment_method', until: new Date(retryAt(delays.length - 1)) };
  }
  return { action: 'retry', at: new Date(retryAt(index)), attempt: failedAttempts + 1 };
}
