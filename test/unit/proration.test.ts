import { prorate, type ProrationBehavior } from '../../domain/proration';

const APRIL = { periodStart: new Date('2025-04-01T00:00:00Z'), periodEnd: new Date('2025-05-01T00:00:00Z') }; // 30 days
const JANUARY = { periodStart: new Date('2025-01-01T00:00:00Z'), periodEnd: new Date('2025-02-01T00:00:00Z') }; // 31 days

describe('prorate', () => {
  it('upgrades $30.00 → $60.00 at exactly half of a 30-day period: credit 1500, charge 3000, net 1500', () => {
    expect(
      prorate({
        oldAmount: 3000,
        newAmount: 6000,
        ...APRIL,
        at: new Date('2025-04-16T00:00:00Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 1500, charge: 3000, net: 1500 });
  });

  // At the start of Jan 10, 9 of 31 days are used and 22 remain:
  // credit 3000 × 22/31 = 2129.03 → 2129, charge 6000 × 22/31 = 4258.06 → 4258.
  it('upgrades on day 10 of a 31-day month by the 22 days left', () => {
    expect(
      prorate({
        oldAmount: 3000,
        newAmount: 6000,
        ...JANUARY,
        at: new Date('2025-01-10T00:00:00Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 2129, charge: 4258, net: 2129 });
  });

  it('gives a negative net on a downgrade (the customer is owed money)', () => {
    expect(
      prorate({
        oldAmount: 6000,
        newAmount: 3000,
        ...JANUARY,
        at: new Date('2025-01-10T00:00:00Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 4258, charge: 2129, net: -2129 });
  });

  it('counts time to the millisecond, not whole days', () => {
    // 12 hours into a 30-day period: 29.5 of 30 days remain; 3000 × 29.5/30 = 2950.
    expect(
      prorate({
        oldAmount: 3000,
        newAmount: 0,
        ...APRIL,
        at: new Date('2025-04-01T12:00:00Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 2950, charge: 0, net: -2950 });
  });

  it('rounds each half-up to the minor unit (not to even), before taking the net', () => {
    const half = { ...APRIL, at: new Date('2025-04-16T00:00:00Z'), behavior: 'create_prorations' as const };
    // 101 / 2 = 50.5 → 51; 105 / 2 = 52.5 → 53 (banker's rounding would say 52).
    expect(prorate({ ...half, oldAmount: 101, newAmount: 105 })).toEqual({ credit: 51, charge: 53, net: 2 });
    // A third of April left: 100 / 3 = 33.33 → 33; 200 / 3 = 66.67 → 67.
    expect(
      prorate({
        ...APRIL,
        oldAmount: 100,
        newAmount: 200,
        at: new Date('2025-04-21T00:00:00Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 33, charge: 67, net: 34 });
  });

  it('credits and charges the whole period when the change is at its start', () => {
    expect(
      prorate({ oldAmount: 3000, newAmount: 6000, ...APRIL, at: APRIL.periodStart, behavior: 'create_prorations' }),
    ).toEqual({ credit: 3000, charge: 6000, net: 3000 });
  });

  it('computes the same amounts for always_invoice (only when they are invoiced differs)', () => {
    const input = { oldAmount: 3000, newAmount: 6000, ...JANUARY, at: new Date('2025-01-10T00:00:00Z') };
    expect(prorate({ ...input, behavior: 'always_invoice' })).toEqual(
      prorate({ ...input, behavior: 'create_prorations' }),
    );
  });

  it("prorates nothing for behavior 'none'", () => {
    expect(
      prorate({ oldAmount: 3000, newAmount: 6000, ...JANUARY, at: new Date('2025-01-10T00:00:00Z'), behavior: 'none' }),
    ).toEqual({ credit: 0, charge: 0, net: 0 });
  });

  it('stays exact where floating point would round the wrong way (large amounts over a year)', () => {
    // 10,045,594,126 × 29,574,029,963 / 31,622,400,000 = 9,394,881,529.49999992 → 9,394,881,529;
    // the same sum in doubles comes out just above .5 and rounds up.
    expect(
      prorate({
        oldAmount: 10_045_594_126,
        newAmount: 0,
        periodStart: new Date('2024-01-01T00:00:00Z'),
        periodEnd: new Date('2025-01-01T00:00:00Z'),
        at: new Date('2024-01-24T16:59:30.037Z'),
        behavior: 'create_prorations',
      }),
    ).toEqual({ credit: 9_394_881_529, charge: 0, net: -9_394_881_529 });
  });

  const valid = {
    oldAmount: 3000,
    newAmount: 6000,
    ...APRIL,
    at: new Date('2025-04-16T00:00:00Z'),
    behavior: 'create_prorations' as ProrationBehavior,
  };
  it.each([
    ['at before the period', { at: new Date('2025-03-31T23:59:59.999Z') }],
    ['at equal to the period end (it belongs to the next period)', { at: APRIL.periodEnd }],
    ['an invalid date', { at: new Date('not a date') }],
    ['an empty period', { periodEnd: APRIL.periodStart }],
    ['a negative amount', { oldAmount: -1 }],
    ['a fractional amount', { newAmount: 30.5 }],
    ['an unsafe integer amount', { newAmount: 2 ** 53 }],
    ['an unknown behavior', { behavior: 'sometimes' as ProrationBehavior }],
  ])('refuses %s with a RangeError', (_name, change) => {
    expect(() => prorate({ ...valid, ...change })).toThrow(RangeError);
  });
});
