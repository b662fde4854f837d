import {
  DEFAULT_DUNNING_POLICY,
  dunningPolicySchema,
  HARD_DECLINE_CODES,
  isHardDecline,
  isMerchantSideFailure,
  nextDunningStep,
  type DunningPolicy,
} from '../../domain/dunning';

const FIRST_FAILURE = new Date('2025-03-08T15:00:00.000Z');
const SOFT = { code: 'card_declined', declineCode: 'insufficient_funds' };

describe('nextDunningStep with the default policy (1, 3, 5, 7 days, then unpaid)', () => {
  // Every retry counts from the first failure, so a late retry does not push the rest back.
  it.each([
    [1, { action: 'retry', at: new Date('2025-03-09T15:00:00.000Z'), attempt: 2 }],
    [2, { action: 'retry', at: new Date('2025-03-11T15:00:00.000Z'), attempt: 3 }],
    [3, { action: 'retry', at: new Date('2025-03-13T15:00:00.000Z'), attempt: 4 }],
    [4, { action: 'retry', at: new Date('2025-03-15T15:00:00.000Z'), attempt: 5 }],
    [5, { action: 'give_up', endState: 'unpaid' }],
    [9, { action: 'give_up', endState: 'unpaid' }],
  ])('after failed attempt %i → %o', (failedAttempts, expected) => {
    expect(
      nextDunningStep(DEFAULT_DUNNING_POLICY, { failedAttempts, firstFailureAt: FIRST_FAILURE, failure: SOFT }),
    ).toEqual(expected);
  });

  it('waits for a new payment method after a hard decline instead of retrying', () => {
    for (const failure of [{ code: 'expired_card' }, { code: 'card_declined', declineCode: 'stolen_card' }]) {
      expect(
        nextDunningStep(DEFAULT_DUNNING_POLICY, { failedAttempts: 1, firstFailureAt: FIRST_FAILURE, failure }),
      ).toEqual({ action: 'wait_for_payment_method', until: new Date(FIRST_FAILURE.getTime() + 7 * 86_400_000) });
    }
  });

  it('still gives up when the delays are exhausted, even on a hard decline (the wait is not open-ended)', () => {
    expect(
      nextDunningStep(DEFAULT_DUNNING_POLICY, {
        failedAttempts: 5,
        firstFailureAt: FIRST_FAILURE,
        failure: { code: 'card_declined', declineCode: 'lost_card' },
      }),
    ).toEqual({ action: 'give_up', endState: 'unpaid' });
  });
});

describe('nextDunningStep after an attempt made late (a new card late in the window, a retry that ran late)', () => {
  const days = (n: number) => new Date(FIRST_FAILURE.getTime() + n * 86_400_000);

  it.each([
    // The first scheduled retry not yet made is the one after the late attempt; those already due are passed over.
    [1, 0, { action: 'retry', at: days(1), attempt: 2 }],
    [1, 3.5, { action: 'retry', at: days(5), attempt: 2 }],
    [2, 3, { action: 'retry', at: days(5), attempt: 3 }],
    [2, 4, { action: 'retry', at: days(5), attempt: 3 }],
    [1, 6.9, { action: 'retry', at: days(7), attempt: 2 }],
    // None left ahead of it: given up, not retried at once.
    [1, 7, { action: 'give_up', endState: 'unpaid' }],
    [3, 8, { action: 'give_up', endState: 'unpaid' }],
  ])('after failed attempt %i made on day %d → %o', (failedAttempts, day, expected) => {
    expect(
      nextDunningStep(DEFAULT_DUNNING_POLICY, {
        failedAttempts,
        firstFailureAt: FIRST_FAILURE,
        lastFailureAt: days(day),
        failure: SOFT,
      }),
    ).toEqual(expected);
  });

  it('a hard decline made late still waits for a card until the window ends, and gives up once it has', () => {
    const failure = { code: 'expired_card' };
    const input = { failedAttempts: 1, firstFailureAt: FIRST_FAILURE, failure };
    expect(nextDunningStep(DEFAULT_DUNNING_POLICY, { ...input, lastFailureAt: days(6) })).toEqual({
      action: 'wait_for_payment_method',
      until: days(7),
    });
    expect(nextDunningStep(DEFAULT_DUNNING_POLICY, { ...input, lastFailureAt: days(7) })).toEqual({
      action: 'give_up',
      endState: 'unpaid',
    });
  });
});

describe('nextDunningStep reads the policy it is given now', () => {
  const input = { failedAttempts: 2, firstFailureAt: FIRST_FAILURE, failure: SOFT };

  it('gives up at once when the policy was shortened mid-dunning, with the new end state', () => {
    const shortened: DunningPolicy = { retryDelaysDays: [2], finalState: 'canceled' };
    expect(nextDunningStep(shortened, input)).toEqual({ action: 'give_up', endState: 'canceled' });
  });

  it('retries on the new schedule when the policy was lengthened', () => {
    const longer: DunningPolicy = { retryDelaysDays: [2, 10, 20], finalState: 'canceled' };
    expect(nextDunningStep(longer, input)).toEqual({
      action: 'retry',
      at: new Date('2025-03-18T15:00:00.000Z'),
      attempt: 3,
    });
  });

  it.each([
    ['an invalid policy', { retryDelaysDays: [3, 1], finalState: 'unpaid' } as DunningPolicy, 1],
    ['no failed attempt yet', DEFAULT_DUNNING_POLICY, 0],
    ['a fractional attempt count', DEFAULT_DUNNING_POLICY, 1.5],
  ])('refuses %s with a RangeError', (_name, policy, failedAttempts) => {
    expect(() => nextDunningStep(policy, { failedAttempts, firstFailureAt: FIRST_FAILURE, failure: SOFT })).toThrow(
      RangeError,
    );
  });
});

describe('isMerchantSideFailure', () => {
  it.each([
    ['gateway_not_attested', true],
    ['payment_config_missing', true],
    ['payment_config_invalid', true],
    ['gateway_account_changed', true],
    ['resource_missing', true],
    ['card_declined', false],
    ['expired_card', false],
    ['processing_error', false],
  ])('%s is the merchant’s: %s', (code, expected) => {
    expect(isMerchantSideFailure({ code })).toBe(expected);
  });

  it('never overlaps the payer’s hard declines', () => {
    expect(HARD_DECLINE_CODES.filter((code) => isMerchantSideFailure({ code }))).toEqual([]);
  });
});

describe('isHardDecline', () => {
  it.each(HARD_DECLINE_CODES.map((code) => [code]))('%s is hard as a code and as a decline code', (code) => {
    expect(isHardDecline({ code })).toBe(true);
    expect(isHardDecline({ code: 'card_declined', declineCode: code })).toBe(true);
  });

  it('lists exactly Stripe’s non-retryable codes', () => {
    expect([...HARD_DECLINE_CODES].sort()).toEqual([
      'authentication_required',
      'card_not_supported',
      'currency_not_supported',
      'do_not_try_again',
      'expired_card',
      'fraudulent',
      'highest_risk_level',
      'incorrect_number',
      'invalid_account',
      'lost_card',
      'pickup_card',
      'revocation_of_all_authorizations',
      'revocation_of_authorization',
      'stolen_card',
      'stop_payment_order',
    ]);
  });

  it.each([
    [{ code: 'card_declined' }],
    [{ code: 'card_declined', declineCode: 'insufficient_funds' }],
    [{ code: 'card_declined', declineCode: 'generic_decline' }],
    [{ code: 'processing_error' }],
  ])('%o is soft (worth retrying)', (failure) => {
    expect(isHardDecline(failure)).toBe(false);
  });
});

describe('dunningPolicySchema', () => {
  it.each([
    ['the default', DEFAULT_DUNNING_POLICY],
    ['one retry at the 60-day limit', { retryDelaysDays: [60], finalState: 'canceled' }],
    ['ten retries', { retryDelaysDays: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], finalState: 'unpaid' }],
  ])('accepts %s', (_name, policy) => {
    expect(dunningPolicySchema.safeParse(policy).success).toBe(true);
  });

  it.each([
    ['no retries', { retryDelaysDays: [], finalState: 'unpaid' }],
    ['eleven retries', { retryDelaysDays: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], finalState: 'unpaid' }],
    ['a zero delay', { retryDelaysDays: [0, 3], finalState: 'unpaid' }],
    ['a delay past 60 days', { retryDelaysDays: [1, 61], finalState: 'unpaid' }],
    ['a fractional delay', { retryDelaysDays: [1.5], finalState: 'unpaid' }],
    ['a repeated delay', { retryDelaysDays: [1, 3, 3], finalState: 'unpaid' }],
    ['decreasing delays', { retryDelaysDays: [5, 3], finalState: 'unpaid' }],
    ['an end state that is not final', { retryDelaysDays: [1], finalState: 'past_due' }],
    ['an unknown field', { retryDelaysDays: [1], finalState: 'unpaid', smartRetries: true }],
  ])('refuses %s', (_name, policy) => {
    expect(dunningPolicySchema.safeParse(policy).success).toBe(false);
  });

  it('keeps the shared default from being changed by one caller', () => {
    expect(() => (DEFAULT_DUNNING_POLICY.retryDelaysDays as number[]).push(9)).toThrow(TypeError);
  });
});
