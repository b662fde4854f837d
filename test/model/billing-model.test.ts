import { DAY, SubscriptionModel, type Policy } from './billing-model';

/** The reference model on hand examples from issue 19 and docs/billing-rules.md. */
const policy: Policy = { retryDelaysDays: [1, 3, 5, 7], finalState: 'unpaid' };
const at = (text: string) => Date.parse(text);

describe('the reference billing model', () => {
  it('pause Jan 15, resume Apr 10 on $30/month: Jan, then the period that starts on resume', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 3_000 });
    sub.advanceTo(at('2026-01-15T00:00:00Z'));
    expect(sub.pause()).toBe(true);
    sub.advanceTo(at('2026-04-10T00:00:00Z'));
    expect(sub.resume()).toBe(true);
    expect(sub.charges.map((c) => [c.label, c.amount])).toEqual([
      ['period 2026-01-01T00:00:00.000Z', 3_000],
      ['period 2026-04-10T00:00:00.000Z', 3_000],
    ]);
    expect(sub.period).toMatchObject({ start: at('2026-04-10T00:00:00Z'), end: at('2026-05-10T00:00:00Z') });
  });

  it('pause Jan 15, resume Jan 20: the January period goes on, the next bill is Feb 1', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 3_000 });
    sub.advanceTo(at('2026-01-15T00:00:00Z'));
    expect(sub.pause()).toBe(true);
    sub.advanceTo(at('2026-01-20T00:00:00Z'));
    expect(sub.resume()).toBe(true);
    expect(sub.charges).toHaveLength(1);
    sub.advanceTo(at('2026-02-01T00:00:00Z'));
    expect(sub.charges.map((c) => c.label)).toEqual([
      'period 2026-01-01T00:00:00.000Z',
      'period 2026-02-01T00:00:00.000Z',
    ]);
  });

  it('a new card after unpaid, inside the owed period: that period is paid and goes on to its end', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 3_000 });
    sub.card = 'hard';
    sub.advanceTo(at('2026-02-09T00:00:00Z'));
    expect(sub.status).toBe('unpaid');
    expect(sub.newCard('visa')).toBe(true);
    expect(sub.charges.map((c) => c.label)).toEqual([
      'period 2026-01-01T00:00:00.000Z',
      'period 2026-02-01T00:00:00.000Z',
    ]);
    expect(sub.period).toMatchObject({ start: at('2026-02-01T00:00:00Z'), end: at('2026-03-01T00:00:00Z') });
  });

  it('a stub in dunning runs past its end; paid late by a new card, the next period is billed at once', () => {
    // A 1-day trial, then Jan 30 to the billing day Feb 1: a 2-day stub, declined and retried Jan 31, Feb 2, Feb 4, Feb 6.
    const sub = new SubscriptionModel(policy, {
      at: at('2026-01-29T00:00:00Z'),
      amount: 3_100,
      trialDays: 1,
      billingDayOfMonth: 1,
    });
    sub.card = 'soft';
    sub.advanceTo(at('2026-02-03T00:00:00Z'));
    // Past the stub's end, still in its dunning: nothing more billed, no February period yet.
    expect(sub.status).toBe('past_due');
    expect(sub.charges).toHaveLength(0);
    expect(sub.period).toMatchObject({ start: at('2026-01-30T00:00:00Z'), end: at('2026-02-01T00:00:00Z') });
    expect(sub.newCard('visa')).toBe(true);
    expect(sub.charges.map((c) => [c.label, c.amount])).toEqual([
      ['period 2026-01-30T00:00:00.000Z', 200],
      ['period 2026-02-01T00:00:00.000Z', 3_100],
    ]);
    expect(sub.status).toBe('active');
    sub.advanceTo(at('2026-03-01T00:00:00Z'));
    expect(sub.charges).toHaveLength(3);
  });

  it('a stub whose dunning is given up bills no later period', () => {
    const sub = new SubscriptionModel(policy, {
      at: at('2026-01-29T00:00:00Z'),
      amount: 3_100,
      trialDays: 1,
      billingDayOfMonth: 1,
    });
    sub.card = 'soft';
    sub.advanceTo(at('2026-04-01T00:00:00Z'));
    expect(sub.status).toBe('unpaid');
    expect(sub.charges).toHaveLength(0);
    expect(sub.uncertain).toBeUndefined();
  });

  it('a hard decline at trial end ends in finalState once the policy window has passed', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 3_000, trialDays: 7 });
    sub.card = 'hard';
    sub.advanceTo(at('2026-01-08T12:00:00Z'));
    expect(sub).toMatchObject({ status: 'past_due', waitingForCard: true });
    sub.advanceTo(at('2026-01-15T00:00:00Z'));
    expect(sub.status).toBe('unpaid');
    sub.advanceTo(at('2026-04-01T00:00:00Z'));
    expect(sub.status).toBe('unpaid');
    expect(sub.charges).toEqual([]);
    // A new card collects the uncollectible period, then starts a new cycle billed at once.
    expect(sub.newCard('visa')).toBe(true);
    expect(sub.charges.map((c) => c.amount)).toEqual([3_000, 3_000]);
    expect(sub.status).toBe('active');
  });

  it('soft declines are retried 1, 3, 5 and 7 days after the first failure, then unpaid', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-03-01T00:00:00Z'), amount: 3_000, trialDays: 3 });
    sub.card = 'soft';
    sub.advanceTo(at('2026-03-10T23:00:00Z'));
    expect(sub.status).toBe('past_due');
    sub.advanceTo(at('2026-03-11T00:00:00Z'));
    expect(sub.status).toBe('unpaid');
    // The first attempt and four retries: five declines, and no more after the end state.
    expect(sub.declines).toBe(5);
    sub.advanceTo(at('2026-04-30T00:00:00Z'));
    expect(sub.declines).toBe(5);
  });

  it('an always_invoice change declined is one attempt, and its difference is carried onto the next bill', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-03-01T00:00:00Z'), amount: 3_000 });
    sub.card = 'soft';
    expect(sub.changePlan(6_000, 'always_invoice')).toBe(true);
    expect(sub.declines).toBe(1);
    expect(sub.pending).toBe(3_000);
    expect(sub.netCharged).toBe(3_000);
  });

  it('a new card declined late in the window passes over the retries already due: no burst of charges on it', () => {
    // Billed when the 1-day trial ends, Mar 2; its retries would be Mar 3, 5, 7 and 9.
    const sub = new SubscriptionModel(policy, { at: at('2026-03-01T00:00:00Z'), amount: 3_000, trialDays: 1 });
    sub.card = 'hard';
    sub.advanceTo(at('2026-03-05T12:00:00Z'));
    expect(sub.status).toBe('past_due');
    // Day 3.5: the retries of days 1 and 3 had passed; the next is day 5, then day 7, then the end state.
    expect(sub.newCard('soft')).toBe(true);
    const declines = () => sub.log.filter((line) => line.includes('declined')).map((line) => line.slice(0, 24));
    expect(declines()).toEqual(['2026-03-02T00:00:00.000Z', '2026-03-05T12:00:00.000Z']);
    sub.advanceTo(at('2026-03-10T00:00:00Z'));
    expect(declines()).toEqual([
      '2026-03-02T00:00:00.000Z',
      '2026-03-05T12:00:00.000Z',
      '2026-03-07T00:00:00.000Z',
      '2026-03-09T00:00:00.000Z',
    ]);
    expect(sub.status).toBe('unpaid');
    expect(sub.declines).toBe(4);
  });

  it('prices a 31-day January stub of a $30 plan billed on the 1st at no more than $30', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:01Z'), amount: 3_000, billingDayOfMonth: 1 });
    expect(sub.charges[0]!.amount).toBeLessThanOrEqual(3_000);
    expect(sub.charges[0]!.amount).toBe(Math.round((3_000 * (31 * DAY - 1000)) / (31 * DAY)));
  });

  it('prorates a change inside a stub against the full cycle: $30 → $45 with 4 days left of a 28-day cycle ≈ $2.14', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-02-10T00:00:00Z'), amount: 3_000, billingDayOfMonth: 1 });
    sub.advanceTo(at('2026-02-25T00:00:00Z'));
    sub.changePlan(4_500, 'create_prorations');
    expect(sub.pending).toBe(Math.round((4_500 * 4) / 28) - Math.round((3_000 * 4) / 28));
    expect(sub.pending).toBe(214);
  });

  it('a plan change during a trial prorates nothing', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-05-01T00:00:00Z'), amount: 3_000, trialDays: 10 });
    sub.changePlan(6_000, 'always_invoice');
    sub.advanceTo(at('2026-05-12T00:00:00Z'));
    expect(sub.charges.map((c) => c.amount)).toEqual([6_000]);
  });

  it('carries bills below the 50-cent minimum onto the next bill', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 20 });
    expect(sub.charges).toEqual([]);
    sub.advanceTo(at('2026-02-01T00:00:00Z'));
    expect(sub.pending).toBe(40);
    sub.advanceTo(at('2026-03-01T00:00:00Z'));
    expect(sub.charges.map((c) => c.amount)).toEqual([60]);
  });

  it('drops a final bill below the minimum when the subscription ends', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 20 });
    sub.advanceTo(at('2026-02-01T00:00:00Z'));
    expect(sub.pending).toBe(40);
    sub.cancel('now');
    expect({ charges: sub.charges, pending: sub.pending, uncertain: sub.uncertain }).toEqual({
      charges: [],
      pending: 0,
      uncertain: undefined,
    });
  });

  it('cancel at period end fires while paused, and can be undone before', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-01-01T00:00:00Z'), amount: 3_000 });
    sub.cancel('period_end');
    sub.cancel('none');
    sub.advanceTo(at('2026-02-05T00:00:00Z'));
    expect(sub.status).toBe('active');
    sub.cancel('period_end');
    sub.pause();
    sub.advanceTo(at('2026-03-05T00:00:00Z'));
    expect(sub.status).toBe('canceled');
    expect(sub.charges).toHaveLength(2);
  });

  it('refunds a pending credit against the last paid period on cancel', () => {
    const sub = new SubscriptionModel(policy, { at: at('2026-04-01T00:00:00Z'), amount: 3_000 });
    sub.advanceTo(at('2026-04-16T00:00:00Z'));
    sub.changePlan(1_000, 'create_prorations');
    expect(sub.pending).toBe(-1_000);
    sub.cancel('now');
    expect(sub.netCharged).toBe(2_000);
  });
});
