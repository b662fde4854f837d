export const PRORATION_BEHAVIORS = ['create_prorations', 'always_invoice', 'none'] as const;
/**
 * Stripe's names. 'create_prorations' and 'always_invoice' prorate alike; they differ only in when
 * the amounts are invoiced (the next renewal or now), which is the caller's business.
 */
export type ProrationBehavior = (typeof PRORATION_BEHAVIORS)[number];

/** Minor units; credit ≥ 0, charge ≥ 0, net = charge - credit (negative on a downgrade). */
export interface Proration {
  credit: number;
  charge: number;
  net: number;
}

/**
 * Changing from oldAmount to newAmount per period at `at` within [periodStart, periodEnd): credit
 * the unused time of the old price, charge the remaining time at the new price, by exact
 * (millisecond) time, each rounded half-up to the minor unit. behavior 'none' → all zero.
 *
 * By time, not by days: a period's length is whatever the calendar made it (28-31 days, 23-hour
 * DST days), and the same instant always gives the same share.
 */
export function prorate(input: {
  oldAmount: number;
  newAmount: number;
  periodStart: Date;
  periodEnd: Date;
  at: Date;
  behavior: ProrationBehavior;
}): Proration {
  const { oldAmount, newAmount, periodStart, periodEnd, at, behavior } = input;
  if (!PRORATION_BEHAVIORS.includes(behavior)) throw new RangeError(`unknown proration behavior '${behavior}'`);
  assertAmount(oldAmount, 'oldAmount');
  assertAmount(newAmount, 'newAmount');
  const start = instant(periodStart, 'periodStart');
  const end = instant(periodEnd, 'periodEnd');
  const now = instant(at, 'at');
  if (end <= start) throw new RangeError('periodEnd must be after periodStart');
  if (now < start || now >= end) {
    throw new RangeError(
      `at ${at.toISOString()} is outside [${periodStart.toISOString()}, ${periodEnd.toISOString()})`,
    );
  }
  if (behavior === 'none') return { credit: 0, charge: 0, net: 0 };

  const remaining = end - now;
  const length = end - start;
  const credit = shareHalfUp(oldAmount, remaining, length);
  const charge = shareHalfUp(newAmount, remaining, length);
  return { credit, charge, net: charge - credit };
}

/**
 * amount × part / whole, rounded half-up. BigInt because amount × milliseconds passes 2^53 (a
 * $100,000.00 yearly price times a year in ms is about 3×10^17).
 */
function shareHalfUp(amount: number, part: number, whole: number): number {
  const numerator = 2n * BigInt(amount) * BigInt(part) + BigInt(whole);
  return Number(numerator / (2n * BigInt(whole)));
}

function assertAmount(amount: number, name: string): void {
  if (!Number.isSafeInteger(amount) || amount < 0) {
    throw new RangeError(`${name} must be a non-negative integer in minor units, got ${amount}`);
  }
}

function instant(date: Date, name: string): number {
  const ms = date instanceof Date ? date.getTime() : NaN;
  if (Number.isNaN(ms)) throw new RangeError(`${name} is not a valid date`);
  return ms;
}
