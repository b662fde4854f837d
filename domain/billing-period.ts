import { DateTime, IANAZone } from 'luxon';

export const INTERVAL_UNITS = ['day', 'week', 'month', 'year'] as const;
export type IntervalUnit = (typeof INTERVAL_UNITS)[number];
export interface BillingInterval {
  unit: IntervalUnit;
  /** Whole units per period, ≥ 1. */
  count: number;
}

/** A billing cycle: boundaries are anchor + k intervals in the company's local calendar. */
export interface BillingCycle {
  /** The instant of boundary 0. */
  anchor: Date;
  interval: BillingInterval;
  /** IANA, e.g. 'America/New_York'. */
  timeZone: string;
  /**
   * The intended day of month (1-31) for month/year intervals; defaults to the anchor's local day.
   * Set it when the anchor itself was clamped (billing on the 31st, first anchored on Feb 28).
   */
  dayOfMonth?: number;
}

/** Whether a string is an IANA time zone luxon knows. */
export function isTimeZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

/**
 * Boundary k (any integer; k < 0 are the boundaries before the anchor): anchor's local date + k*interval, the day clamped to the month's last day
 * (anchored on Jan 31: Feb 28/29, then Mar 31, never Mar 28), the anchor's local time of day kept
 * (across DST). Computed from the anchor each time, never from the previous boundary, so one short
 * month never shortens the ones after it.
 *
 * A local time that does not exist that day (the spring-forward gap) moves forward by the gap, as
 * luxon resolves it; one that occurs twice (fall back) is one of its two instants.
 */
export function cycleBoundary(cycle: BillingCycle, k: number): Date {
  assertCycle(cycle);
  if (!Number.isSafeInteger(k)) throw new RangeError(`boundary index must be an integer, got ${k}`);
  // Boundary 0 is the anchor instant itself, even if its wall time is ambiguous.
  if (k === 0) return new Date(cycle.anchor.getTime());

  const anchor = DateTime.fromJSDate(cycle.anchor, { zone: cycle.timeZone });
  const { unit, count } = cycle.interval;
  let date: { year: number; month: number; day: number };
  if (unit === 'day' || unit === 'week') {
    // Pure calendar arithmetic on the local date (UTC has no DST to get in the way).
    const local = DateTime.utc(anchor.year, anchor.month, anchor.day).plus({
      days: k * count * (unit === 'week' ? 7 : 1),
    });
    date = { year: local.year, month: local.month, day: local.day };
  } else {
    const months = anchor.month - 1 + k * count * (unit === 'year' ? 12 : 1);
    const year = anchor.year + Math.floor(months / 12);
    const month = (((months % 12) + 12) % 12) + 1;
    const lastDay = DateTime.utc(year, month, 1).daysInMonth!;
    date = { year, month, day: Math.min(cycle.dayOfMonth ?? anchor.day, lastDay) };
  }
  return DateTime.fromObject(
    { ...date, hour: anchor.hour, minute: anchor.minute, second: anchor.second, millisecond: anchor.millisecond },
    { zone: cycle.timeZone },
  ).toJSDate();
}

/**
 * The full cycle a period is priced against: the period itself, or for a period before the cycle (a stub up to the
 * billing day) the whole interval that ends where the stub does, `[boundary −1, anchor)` — so a stub never costs more
 * than a full period (docs/billing-rules.md, "Periods").
 */
export function pricingCycleOf(
  cycle: BillingCycle,
  period: { index: number; start: Date; end: Date },
): { start: Date; end: Date } {
  if (period.index >= 0) return { start: period.start, end: period.end };
  return { start: cycleBoundary(cycle, -1), end: cycleBoundary(cycle, 0) };
}

/** Average interval lengths, only to guess k before stepping to the exact boundary. */
const NOMINAL_MS: Record<IntervalUnit, number> = {
  day: 86_400_000,
  week: 7 * 86_400_000,
  month: (365.2425 / 12) * 86_400_000,
  year: 365.2425 * 86_400_000,
};

/** The period [start, end) of the cycle that contains `at` (at ≥ anchor), with its index k. */
export function periodAt(cycle: BillingCycle, at: Date): { index: number; start: Date; end: Date } {
  assertCycle(cycle);
  assertDate(at, 'at');
  if (at.getTime() < cycle.anchor.getTime()) {
    throw new RangeError(`${at.toISOString()} is before the cycle's anchor ${cycle.anchor.toISOString()}`);
  }
  const elapsed = at.getTime() - cycle.anchor.getTime();
  let index = Math.floor(elapsed / (NOMINAL_MS[cycle.interval.unit] * cycle.interval.count));
  // The guess is off by at most one (DST hours, month lengths); step to the exact period.
  while (index > 0 && cycleBoundary(cycle, index).getTime() > at.getTime()) index -= 1;
  while (cycleBoundary(cycle, index + 1).getTime() <= at.getTime()) index += 1;
  return { index, start: cycleBoundary(cycle, index), end: cycleBoundary(cycle, index + 1) };
}

/**
 * Day-of-month billing: the first local midnight on or after `from` whose day is `day` (clamped to
 * month end: day 31 in February is Feb 28/29). Where midnight does not exist (a DST change at
 * midnight), it is the start of that local day.
 */
export function dayOfMonthAnchor(from: Date, day: number, timeZone: string): Date {
  assertDate(from, 'from');
  assertDayOfMonth(day);
  assertTimeZone(timeZone);
  const local = DateTime.fromJSDate(from, { zone: timeZone });
  for (const monthStart of [local.startOf('month'), local.startOf('month').plus({ months: 1 })]) {
    const candidate = DateTime.fromObject(
      { year: monthStart.year, month: monthStart.month, day: Math.min(day, monthStart.daysInMonth!) },
      { zone: timeZone },
    ).startOf('day');
    if (candidate.toMillis() >= from.getTime()) return candidate.toJSDate();
  }
  // This month's day is at most a month away, so next month's always qualifies.
  throw new Error('unreachable: no day-of-month anchor within two months');
}

function assertCycle(cycle: BillingCycle): void {
  assertDate(cycle.anchor, 'anchor');
  assertTimeZone(cycle.timeZone);
  if (!INTERVAL_UNITS.includes(cycle.interval.unit)) {
    throw new RangeError(`unknown interval unit '${String(cycle.interval.unit)}'`);
  }
  if (!Number.isSafeInteger(cycle.interval.count) || cycle.interval.count < 1) {
    throw new RangeError(`interval count must be an integer ≥ 1, got ${cycle.interval.count}`);
  }
  if (cycle.dayOfMonth !== undefined) assertDayOfMonth(cycle.dayOfMonth);
}

function assertDate(value: Date, name: string): void {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new RangeError(`${name} is not a valid date`);
}

function assertDayOfMonth(day: number): void {
  if (!Number.isInteger(day) || day < 1 || day > 31) throw new RangeError(`day of month must be 1-31, got ${day}`);
}

function assertTimeZone(zone: string): void {
  if (!isTimeZone(zone)) throw new RangeError(`'${zone}' is not an IANA time zone`);
}

/**
 * A new cycle anchored at `at` (Stripe's `billing_cycle_anchor: now`), for collection that restarts after a pause or
 * after dunning ended unpaid: its first period starts at `at` and is billed then; the time that passed before is never
 * billed. The billing day becomes the restart's (a stub would bill time nobody asked to restart).
 */
export function restartedCycle(
  at: Date,
  timeZone: string,
  interval: BillingInterval,
): { cycle: { anchor: Date; timeZone: string }; currentPeriod: { index: number; start: Date; end: Date } } {
  const cycle = { anchor: new Date(at.getTime()), timeZone };
  return { cycle, currentPeriod: { index: 0, start: cycle.anchor, end: cycleBoundary({ ...cycle, interval }, 1) } };
}
