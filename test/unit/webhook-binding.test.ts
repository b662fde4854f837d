import {
  configurationId,
  decideEventBinding,
  isLiveModeKey,
  type EventBindingFacts,
} from '../../domain/webhook-binding';

const bound: EventBindingFacts = {
  kind: 'intent',
  eventObjectId: 'pi_ours',
  recordedObjectId: 'pi_ours',
  verifiedBy: 'co_1.off_north',
  servedBy: 'co_1.off_north',
  eventLivemode: false,
  secretKey: 'sk_test_north',
};

describe('decideEventBinding: an event applies only to what we created, from its configuration, in its mode', () => {
  it('binds the event naming our recorded object, verified by the configuration serving the record, in its mode', () => {
    expect(decideEventBinding(bound)).toEqual({ bound: true });
    expect(decideEventBinding({ ...bound, eventLivemode: true, secretKey: 'sk_live_north' })).toEqual({ bound: true });
  });

  it.each<[string, Partial<EventBindingFacts>, string]>([
    ['no object recorded (we never created one)', { recordedObjectId: undefined }, 'intent_unknown'],
    ['no refund recorded', { kind: 'refund', recordedObjectId: undefined, eventObjectId: 're_1' }, 'refund_unknown'],
    ['another object than the recorded one', { eventObjectId: 'pi_theirs' }, 'intent_mismatch'],
    ['an event naming no object', { eventObjectId: undefined }, 'intent_mismatch'],
    ['another refund than the recorded one', { kind: 'refund', eventObjectId: 're_2' }, 'refund_mismatch'],
    ["the record's configuration cannot be resolved", { servedBy: undefined }, 'config_unknown'],
    ['verified by another office', { verifiedBy: 'co_1.off_south' }, 'office_mismatch'],
    ["verified by the company's configuration for an office's record", { verifiedBy: 'co_1' }, 'office_mismatch'],
    ['a live event for a test key', { eventLivemode: true }, 'livemode_mismatch'],
    ['a test event for a live key', { secretKey: 'sk_live_north' }, 'livemode_mismatch'],
    ['a test event for a live restricted key', { secretKey: 'rk_live_north' }, 'livemode_mismatch'],
  ])('refuses %s (%s)', (_label, change, reason) => {
    expect(decideEventBinding({ ...bound, ...change })).toEqual({ bound: false, reason });
  });

  it('checks the object before the configuration: a forged intent is intent_unknown whatever else is wrong', () => {
    expect(
      decideEventBinding({ ...bound, recordedObjectId: undefined, verifiedBy: 'co_2', eventLivemode: true }),
    ).toEqual({ bound: false, reason: 'intent_unknown' });
  });
});

describe('isLiveModeKey', () => {
  it.each([
    ['sk_live_abc', true],
    ['rk_live_abc', true],
    ['sk_test_abc', false],
    ['rk_test_abc', false],
    ['pk_live_abc', false],
    ['sk_live', false],
  ])('%s → %s', (key, live) => {
    expect(isLiveModeKey(key)).toBe(live);
  });
});

describe('configurationId', () => {
  it("names an office's own configuration as its endpoint does, and the company's otherwise", () => {
    expect(configurationId('co_1', 'off_north', 'office')).toBe('co_1.off_north');
    expect(configurationId('co_1', 'off_north', 'company')).toBe('co_1');
    expect(configurationId('co_1', undefined, 'office')).toBe('co_1');
  });
});
