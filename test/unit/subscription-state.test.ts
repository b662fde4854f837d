import {
  decideSubscription,
  isBillable,
  isTerminal,
  SUBSCRIPTION_STATUSES,
  type SubscriptionEvent,
  type SubscriptionRefusal,
  type SubscriptionStatus,
} from '../../domain/subscription-state';

const EVENTS = {
  succeeded: { type: 'payment_succeeded' },
  failed: { type: 'payment_failed', final: false, endState: 'unpaid' },
  failed_final_unpaid: { type: 'payment_failed', final: true, endState: 'unpaid' },
  failed_final_canceled: { type: 'payment_failed', final: true, endState: 'canceled' },
  requires_action: { type: 'payment_requires_action' },
  first_payment_expired: { type: 'first_payment_expired' },
  trial_started: { type: 'trial_started' },
  trial_ended: { type: 'trial_ended' },
  pause: { type: 'pause' },
  resume: { type: 'resume' },
  resume_in_trial: { type: 'resume', inTrial: true },
  cancel: { type: 'cancel' },
} as const satisfies Record<string, SubscriptionEvent>;
type EventName = keyof typeof EVENTS;

// Rows: the subscription's status; keys: the event. A status = ok, the subscription moves there
// (or stays, when it is the row's own); anything else = refused with that reason.
type Cell = SubscriptionStatus | SubscriptionRefusal;
// Typed as full Records, so a missing status or event does not compile.
const TABLE: Record<SubscriptionStatus, Record<EventName, Cell>> = {
  incomplete: {
    succeeded: 'active',
    failed: 'incomplete',
    failed_final_unpaid: 'incomplete',
    failed_final_canceled: 'incomplete',
    requires_action: 'incomplete',
    first_payment_expired: 'incomplete_expired',
    trial_started: 'invalid_transition',
    trial_ended: 'not_trialing',
    pause: 'invalid_transition',
    resume: 'not_paused',
    resume_in_trial: 'not_paused',
    cancel: 'canceled',
  },
  incomplete_expired: {
    succeeded: 'expired',
    failed: 'expired',
    failed_final_unpaid: 'expired',
    failed_final_canceled: 'expired',
    requires_action: 'expired',
    first_payment_expired: 'expired',
    trial_started: 'expired',
    trial_ended: 'expired',
    pause: 'expired',
    resume: 'expired',
    resume_in_trial: 'expired',
    cancel: 'expired',
  },
  trialing: {
    succeeded: 'active',
    failed: 'past_due',
    failed_final_unpaid: 'unpaid',
    failed_final_canceled: 'canceled',
    requires_action: 'past_due',
    first_payment_expired: 'invalid_transition',
    trial_started: 'trialing',
    trial_ended: 'trialing',
    pause: 'paused',
    resume: 'not_paused',
    resume_in_trial: 'not_paused',
    cancel: 'canceled',
  },
  active: {
    succeeded: 'active',
    failed: 'past_due',
    failed_final_unpaid: 'unpaid',
    failed_final_canceled: 'canceled',
    requires_action: 'past_due',
    first_payment_expired: 'invalid_transition',
    trial_started: 'trialing',
    trial_ended: 'not_trialing',
    pause: 'paused',
    resume: 'not_paused',
    resume_in_trial: 'not_paused',
    cancel: 'canceled',
  },
  past_due: {
    succeeded: 'active',
    failed: 'past_due',
    failed_final_unpaid: 'unpaid',
    failed_final_canceled: 'canceled',
    requires_action: 'past_due',
    first_payment_expired: 'invalid_transition',
    trial_started: 'invalid_transition',
    trial_ended: 'not_trialing',
    pause: 'subscription_past_due',
    resume: 'not_paused',
    resume_in_trial: 'not_paused',
    cancel: 'canceled',
  },
  paused: {
    succeeded: 'subscription_paused',
    failed: 'subscription_paused',
    failed_final_unpaid: 'subscription_paused',
    failed_final_canceled: 'subscription_paused',
    requires_action: 'subscription_paused',
    first_payment_expired: 'invalid_transition',
    trial_started: 'invalid_transition',
    trial_ended: 'not_trialing',
    pause: 'already_paused',
    resume: 'active',
    resume_in_trial: 'trialing',
    cancel: 'canceled',
  },
  unpaid: {
    succeeded: 'active',
    failed: 'unpaid',
    failed_final_unpaid: 'unpaid',
    failed_final_canceled: 'unpaid',
    requires_action: 'unpaid',
    first_payment_expired: 'invalid_transition',
    trial_started: 'invalid_transition',
    trial_ended: 'not_trialing',
    pause: 'subscription_past_due',
    resume: 'not_paused',
    resume_in_trial: 'not_paused',
    cancel: 'canceled',
  },
  canceled: {
    succeeded: 'already_canceled',
    failed: 'already_canceled',
    failed_final_unpaid: 'already_canceled',
    failed_final_canceled: 'already_canceled',
    requires_action: 'already_canceled',
    first_payment_expired: 'already_canceled',
    trial_started: 'already_canceled',
    trial_ended: 'already_canceled',
    pause: 'already_canceled',
    resume: 'already_canceled',
    resume_in_trial: 'already_canceled',
    cancel: 'already_canceled',
  },
};

function isStatus(cell: Cell): cell is SubscriptionStatus {
  return (SUBSCRIPTION_STATUSES as readonly string[]).includes(cell);
}

describe('subscription status on events', () => {
  for (const [from, row] of Object.entries(TABLE) as Array<[SubscriptionStatus, Record<EventName, Cell>]>) {
    for (const [name, expected] of Object.entries(row) as Array<[EventName, Cell]>) {
      it(`${from} + ${name} → ${expected}`, () => {
        expect(decideSubscription(from, EVENTS[name])).toEqual(
          isStatus(expected) ? { ok: true, to: expected } : { ok: false, reason: expected },
        );
      });
    }
  }

  it('never revives a canceled subscription, even on a late payment_succeeded', () => {
    for (const event of Object.values(EVENTS))
      expect(decideSubscription('canceled', event)).toMatchObject({ ok: false });
  });

  it('walks a renewal through dunning to unpaid, back to active with a new card, then to canceled for good', () => {
    const steps: SubscriptionEvent[] = [
      { type: 'payment_succeeded' },
      { type: 'payment_failed', final: false, endState: 'unpaid' },
      { type: 'payment_failed', final: false, endState: 'unpaid' },
      { type: 'payment_failed', final: true, endState: 'unpaid' },
      { type: 'payment_succeeded' },
      { type: 'cancel' },
    ];
    let status: SubscriptionStatus = 'incomplete';
    const seen: SubscriptionStatus[] = [];
    for (const event of steps) {
      const decision = decideSubscription(status, event);
      if (!decision.ok) throw new Error(`refused ${event.type} in ${status}: ${decision.reason}`);
      status = decision.to;
      seen.push(status);
    }
    expect(seen).toEqual(['active', 'past_due', 'past_due', 'unpaid', 'active', 'canceled']);
    expect(decideSubscription(status, { type: 'payment_succeeded' })).toEqual({
      ok: false,
      reason: 'already_canceled',
    });
  });
});

describe('isTerminal and isBillable', () => {
  const EXPECTED: Record<SubscriptionStatus, { terminal: boolean; billable: boolean }> = {
    incomplete: { terminal: false, billable: false },
    incomplete_expired: { terminal: true, billable: false },
    trialing: { terminal: false, billable: true },
    active: { terminal: false, billable: true },
    past_due: { terminal: false, billable: true },
    paused: { terminal: false, billable: false },
    unpaid: { terminal: false, billable: false },
    canceled: { terminal: true, billable: false },
  };

  it.each(Object.entries(EXPECTED) as Array<[SubscriptionStatus, { terminal: boolean; billable: boolean }]>)(
    '%s → %o',
    (status, expected) => {
      expect({ terminal: isTerminal(status), billable: isBillable(status) }).toEqual(expected);
    },
  );

  it('refuses every event in exactly the terminal statuses', () => {
    for (const status of SUBSCRIPTION_STATUSES) {
      const refusesAll = Object.values(EVENTS).every((event) => !decideSubscription(status, event).ok);
      expect(refusesAll).toBe(isTerminal(status));
    }
  });
});
