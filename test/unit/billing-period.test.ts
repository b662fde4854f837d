import { DateTime } from 'luxon';
import {
  cycleBoundary,
  dayOfMonthAnchor,
  isTimeZone,
  periodAt,
  pricingCycleOf,
  type BillingCycle,
  type BillingInterval,
} from '../../domain/billing-period';

const NY = 'America/New_York';

/** A wall-clock time in `zone`, as the company would read it. */
function local(date: Date, zone = NY): string {
  return DateTime.fromJSDate(date, { zone }).toFormat('yyyy-MM-dd HH:mm');
}

function at(localTime: string, zone = NY): Date {
  return DateTime.fromFormat(localTime, 'yyyy-MM-dd HH:mm', { zone }).toJSDate();
}

function cycle(anchor: string, interval: BillingInterval, extra: Partial<BillingCycle> = {}): BillingCycle {
  return { anchor: at(anchor), interval, timeZone: NY, ...extra };
}

function boundaries(c: BillingCycle, count: number): string[] {
  return Array.from({ length: count }, (_, k) => local(cycleBoundary(c, k), c.timeZone));
}

const MONTHLY: BillingInterval = { unit: 'month', count: 1 };

describe('cycleBoundary', () => {
  it('bills a Jan 31 anchor on each month’s last day for a non-leap year, back on the 31st when it can', () => {
    expect(boundaries(cycle('2025-01-31 09:00', MONTHLY), 13)).toEqual([
      '2025-01-31 09:00',
      '2025-02-28 09:00',
      '2025-03-31 09:00',
      '2025-04-30 09:00',
      '2025-05-31 09:00',
      '2025-06-30 09:00',
      '2025-07-31 09:00',
      '2025-08-31 09:00',
      '2025-09-30 09:00',
      '2025-10-31 09:00',
      '2025-11-30 09:00',
      '2025-12-31 09:00',
      '2026-01-31 09:00',
    ]);
  });

  it('bills a Jan 31 anchor on Feb 29 in a leap year', () => {
    expect(boundaries(cycle('2024-01-31 09:00', MONTHLY), 13)).toEqual([
      '2024-01-31 09:00',
      '2024-02-29 09:00',
      '2024-03-31 09:00',
      '2024-04-30 09:00',
      '2024-05-31 09:00',
      '2024-06-30 09:00',
      '2024-07-31 09:00',
      '2024-08-31 09:00',
      '2024-09-30 09:00',
      '2024-10-31 09:00',
      '2024-11-30 09:00',
      '2024-12-31 09:00',
      '2025-01-31 09:00',
    ]);
  });

  it('keeps the instants exact across the DST change (EST in winter, EDT in spring)', () => {
    const c = cycle('2025-01-31 09:00', MONTHLY);
    expect(cycleBoundary(c, 0).toISOString()).toBe('2025-01-31T14:00:00.000Z');
    expect(cycleBoundary(c, 1).toISOString()).toBe('2025-02-28T14:00:00.000Z');
    expect(cycleBoundary(c, 2).toISOString()).toBe('2025-03-31T13:00:00.000Z');
  });

  it('returns the anchor instant itself as boundary 0', () => {
    const anchor = new Date('2025-11-02T06:30:00.000Z'); // 01:30 EST, the second 01:30 that night
    expect(cycleBoundary({ anchor, interval: MONTHLY, timeZone: NY }, 0)).toEqual(anchor);
  });

  it('bills on the intended day of month when the anchor itself was clamped', () => {
    const c = cycle('2025-02-28 00:00', MONTHLY, { dayOfMonth: 31 });
    expect(boundaries(c, 4)).toEqual(['2025-02-28 00:00', '2025-03-31 00:00', '2025-04-30 00:00', '2025-05-31 00:00']);
  });

  it('clamps every quarter from the anchor, not from the previous boundary', () => {
    const c = cycle('2024-11-30 12:00', { unit: 'month', count: 3 });
    expect(boundaries(c, 5)).toEqual([
      '2024-11-30 12:00',
      '2025-02-28 12:00',
      '2025-05-30 12:00',
      '2025-08-30 12:00',
      '2025-11-30 12:00',
    ]);
  });

  it('bills a Feb 29 yearly anchor on Feb 28 and again on Feb 29 in the next leap year', () => {
    expect(boundaries(cycle('2024-02-29 08:15', { unit: 'year', count: 1 }), 6)).toEqual([
      '2024-02-29 08:15',
      '2025-02-28 08:15',
      '2026-02-28 08:15',
      '2027-02-28 08:15',
      '2028-02-29 08:15',
      '2029-02-28 08:15',
    ]);
    expect(boundaries(cycle('2024-02-29 08:15', { unit: 'year', count: 4 }), 3)).toEqual([
      '2024-02-29 08:15',
      '2028-02-29 08:15',
      '2032-02-29 08:15',
    ]);
  });

  it('steps weeks and days by count, across month and year ends', () => {
    expect(boundaries(cycle('2024-12-23 10:00', { unit: 'week', count: 2 }), 4)).toEqual([
      '2024-12-23 10:00',
      '2025-01-06 10:00',
      '2025-01-20 10:00',
      '2025-02-03 10:00',
    ]);
    expect(boundaries(cycle('2024-02-26 10:00', { unit: 'day', count: 3 }), 4)).toEqual([
      '2024-02-26 10:00',
      '2024-02-29 10:00',
      '2024-03-03 10:00',
      '2024-03-06 10:00',
    ]);
  });

  it('keeps the local time of day across spring forward (a 23-hour day) and fall back (25 hours)', () => {
    const spring = cycle('2025-03-08 09:00', { unit: 'day', count: 1 });
    expect(cycleBoundary(spring, 0).toISOString()).toBe('2025-03-08T14:00:00.000Z');
    expect(cycleBoundary(spring, 1).toISOString()).toBe('2025-03-09T13:00:00.000Z');

    const fall = cycle('2025-11-01 09:00', { unit: 'day', count: 1 });
    expect(cycleBoundary(fall, 0).toISOString()).toBe('2025-11-01T13:00:00.000Z');
    expect(cycleBoundary(fall, 1).toISOString()).toBe('2025-11-02T14:00:00.000Z');

    const weekly = cycle('2025-03-03 09:00', { unit: 'week', count: 1 });
    expect(boundaries(weekly, 3)).toEqual(['2025-03-03 09:00', '2025-03-10 09:00', '2025-03-17 09:00']);
  });

  it('moves a time inside the spring-forward gap forward, and only on that day', () => {
    const c = cycle('2025-03-08 02:30', { unit: 'day', count: 1 });
    expect(boundaries(c, 3)).toEqual(['2025-03-08 02:30', '2025-03-09 03:30', '2025-03-10 02:30']);
  });

  it('follows the company’s zone, not UTC, for the local date', () => {
    // 23:30 on Jan 31 in New York is already Feb 1 in UTC.
    const c = cycle('2025-01-31 23:30', MONTHLY);
    expect(cycleBoundary(c, 0).toISOString()).toBe('2025-02-01T04:30:00.000Z');
    expect(boundaries(c, 3)).toEqual(['2025-01-31 23:30', '2025-02-28 23:30', '2025-03-31 23:30']);
  });

  it('counts back from the anchor too: the boundary before Mar 31 is Feb 28, before Jan 31 is Dec 31', () => {
    const c = cycle('2025-03-31 00:00', MONTHLY);
    expect(local(cycleBoundary(c, -1), c.timeZone)).toBe('2025-02-28 00:00');
    expect(local(cycleBoundary(c, -3), c.timeZone)).toBe('2024-12-31 00:00');
    expect(local(cycleBoundary(cycle('2025-01-31 00:00', MONTHLY), -1), c.timeZone)).toBe('2024-12-31 00:00');
  });

  it.each([
    ['a fractional index', cycle('2025-01-01 00:00', MONTHLY), 1.5],
    ['a zero count', cycle('2025-01-01 00:00', { unit: 'month', count: 0 }), 1],
    ['an unknown zone', { ...cycle('2025-01-01 00:00', MONTHLY), timeZone: 'Mars/Olympus_Mons' }, 1],
    ['a day of month 32', cycle('2025-01-01 00:00', MONTHLY, { dayOfMonth: 32 }), 1],
  ])('refuses %s', (_name, c, k) => {
    expect(() => cycleBoundary(c, k)).toThrow(RangeError);
  });
});

describe('periodAt', () => {
  const c = cycle('2025-01-31 09:00', MONTHLY);

  it('starts a period at its boundary exactly (start inclusive)', () => {
    expect(periodAt(c, at('2025-01-31 09:00'))).toEqual({
      index: 0,
      start: at('2025-01-31 09:00'),
      end: at('2025-02-28 09:00'),
    });
    expect(periodAt(c, at('2025-02-28 09:00'))).toEqual({
      index: 1,
      start: at('2025-02-28 09:00'),
      end: at('2025-03-31 09:00'),
    });
  });

  it('ends a period just before the next boundary (end exclusive)', () => {
    const justBefore = new Date(at('2025-02-28 09:00').getTime() - 1);
    expect(periodAt(c, justBefore)).toMatchObject({ index: 0, end: at('2025-02-28 09:00') });
  });

  it('finds the period that holds an instant long after the anchor', () => {
    expect(periodAt(c, at('2030-03-01 00:00'))).toEqual({
      index: 61,
      start: at('2030-02-28 09:00'),
      end: at('2030-03-31 09:00'),
    });
    const daily = cycle('2025-03-08 09:00', { unit: 'day', count: 1 });
    // 08:59 local, the day after the spring change: still the previous day's period.
    expect(periodAt(daily, at('2025-03-10 08:59'))).toMatchObject({ index: 1, start: at('2025-03-09 09:00') });
    // Ten years hold two leap days (2028, 2032): 3652 days, then two more.
    expect(periodAt(daily, at('2035-03-10 09:00'))).toMatchObject({ index: 3654, start: at('2035-03-10 09:00') });
  });

  it('refuses an instant before the anchor', () => {
    expect(() => periodAt(c, new Date(c.anchor.getTime() - 1))).toThrow(RangeError);
  });
});

describe('pricingCycleOf', () => {
  it('prices a stub up to Feb 1 against January (31 days), the cycle that ends where the stub does', () => {
    const c = cycle('2026-02-01 00:00', MONTHLY, { dayOfMonth: 1 });
    const stub = { index: -1, start: at('2026-01-10 12:00'), end: at('2026-02-01 00:00') };
    const priced = pricingCycleOf(c, stub);
    expect([local(priced.start), local(priced.end)]).toEqual(['2026-01-01 00:00', '2026-02-01 00:00']);
  });

  it('prices a period of the cycle against itself', () => {
    const c = cycle('2026-02-01 00:00', MONTHLY);
    const period = { index: 2, start: at('2026-04-01 00:00'), end: at('2026-05-01 00:00') };
    expect(pricingCycleOf(c, period)).toEqual({ start: period.start, end: period.end });
  });
});

describe('dayOfMonthAnchor', () => {
  it('clamps day 31 to the last day of February, leap or not', () => {
    expect(local(dayOfMonthAnchor(at('2025-02-10 12:00'), 31, NY))).toBe('2025-02-28 00:00');
    expect(local(dayOfMonthAnchor(at('2024-02-10 12:00'), 31, NY))).toBe('2024-02-29 00:00');
  });

  it('moves to next month when this month’s day has passed', () => {
    expect(local(dayOfMonthAnchor(at('2025-02-28 00:01'), 31, NY))).toBe('2025-03-31 00:00');
    expect(local(dayOfMonthAnchor(at('2025-12-20 00:00'), 15, NY))).toBe('2026-01-15 00:00');
  });

  it('returns `from` itself when it is that day’s midnight exactly (on or after)', () => {
    const midnight = at('2025-03-01 00:00');
    expect(dayOfMonthAnchor(midnight, 1, NY)).toEqual(midnight);
    expect(local(dayOfMonthAnchor(new Date(midnight.getTime() + 1), 1, NY))).toBe('2025-04-01 00:00');
  });

  it('reads the day in the company’s zone when it differs from the UTC day', () => {
    // 03:30 UTC on Mar 15 is 23:30 on Mar 14 in New York.
    const from = new Date('2025-03-15T03:30:00.000Z');
    expect(dayOfMonthAnchor(from, 15, NY).toISOString()).toBe('2025-03-15T04:00:00.000Z');
    expect(local(dayOfMonthAnchor(from, 14, NY))).toBe('2025-04-14 00:00');
    // 12:00 UTC on Jan 14 is 01:00 on Jan 15 in Auckland: the 14th has passed there.
    const auckland = 'Pacific/Auckland';
    expect(local(dayOfMonthAnchor(new Date('2025-01-14T12:00:00.000Z'), 14, auckland), auckland)).toBe(
      '2025-02-14 00:00',
    );
  });

  it('refuses a day outside 1-31 and an unknown zone', () => {
    expect(() => dayOfMonthAnchor(new Date(), 0, NY)).toThrow(RangeError);
    expect(() => dayOfMonthAnchor(new Date(), 32, NY)).toThrow(RangeError);
    expect(() => dayOfMonthAnchor(new Date(), 1, 'Eastern')).toThrow(RangeError);
  });
});

describe('isTimeZone', () => {
  it.each([
    ['America/New_York', true],
    ['Pacific/Auckland', true],
    ['UTC', true],
    ['Mars/Olympus_Mons', false],
    ['', false],
    ['+05:00', false],
  ])('%j → %s', (zone, expected) => {
    expect(isTimeZone(zone)).toBe(expected);
  });
});
