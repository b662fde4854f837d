/**
 * Subscription statuses as Stripe users know them, and the one place that decides how an event
 * moves them. Pure: a caller asks, then applies the answer with a conditional update on `from`.
 */
export const SUBSCRIPTION_STATUSES = [
  'incomplete',
  'incomplete_expired',
  'trialing',
  'active',
  'past_due',
  'paused',
  'unpaid',
  'canceled',
] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

export type SubscriptionEvent =
  /** A period's charge succeeded (first or renewal). Not a $0 trial invoice: that is trial_started. */
  | { type: 'payment_succeeded' }
  /** final = dunning exhausted (or incomplete first payment); endState = the dunning policy's, read now. */
  | { type: 'payment_failed'; final: boolean; endState: 'unpaid' | 'canceled' }
  | { type: 'payment_requires_action' }
  /** Incomplete for 23 hours. */
  | { type: 'first_payment_expired' }
  | { type: 'trial_started' }
  /** The trial-end charge is being attempted; the subscription stays trialing until the outcome. */
  | { type: 'trial_ended' }
  | { type: 'pause' }
  /** inTrial: the trial had not ended when the subscription was resumed, so it goes on with the trial. */
  | { type: 'resume'; inTrial?: boolean }
  /** Now, or at period end when that moment comes. */
  | { type: 'cancel' };
export type SubscriptionEventType = SubscriptionEvent['type'];

export type SubscriptionRefusal =
  | 'already_canceled'
  | 'expired'
  | 'already_paused'
  | 'not_paused'
  | 'not_trialing'
  | 'subscription_paused'
  | 'subscription_past_due'
  | 'invalid_transition';

/** ok with `to` equal to `from` means the event is expected there and changes nothing. */
export type SubscriptionDecision = { ok: true; to: SubscriptionStatus } | { ok: false; reason: SubscriptionRefusal };

/** No event leaves these: a canceled subscription is never revived (a new one is created instead). */
export function isTerminal(status: SubscriptionStatus): boolean {
  return status === 'canceled' || status === 'incomplete_expired';
}

/** Renewals run for these. A paused or unpaid subscription bills nothing until it is active again. */
export function isBillable(status: SubscriptionStatus): boolean {
  return status === 'trialing' || status === 'active' || status === 'past_due';
}

export function decideSubscription(from: SubscriptionStatus, event: SubscriptionEvent): SubscriptionDecision {
  // Terminal first: Stripe delivers out of order, so a late payment_succeeded can reach a
  // canceled subscription; the money is the payment's business, the status stays.
  if (from === 'canceled') return refuse('already_canceled');
  if (from === 'incomplete_expired') return refuse('expired');

  switch (event.type) {
    case 'payment_succeeded':
      if (from === 'paused') return refuse('subscription_paused');
      // incomplete: the first payment; trialing: the trial-end charge; unpaid: a new card paid the open period.
      return to('active');

    case 'payment_failed':
      if (from === 'paused') return refuse('subscription_paused');
      // Stripe keeps an incomplete subscription until its 23 hours run out, however many attempts fail.
      if (from === 'incomplete') return to('incomplete');
      // Dunning is already over: a failed attempt with another card neither restarts nor ends it.
      if (from === 'unpaid') return to('unpaid');
      return to(event.final ? event.endState : 'past_due');

    case 'payment_requires_action':
      if (from === 'paused') return refuse('subscription_paused');
      if (from === 'incomplete' || from === 'unpaid') return to(from);
      // A renewal waiting for the customer to authenticate is unpaid so far: Stripe says past_due.
      return to('past_due');

    case 'first_payment_expired':
      return from === 'incomplete' ? to('incomplete_expired') : refuse('invalid_transition');

    case 'trial_started':
      // Stripe lets an active subscription take a trial (trial_end set on update); trialing extends it.
      return from === 'active' || from === 'trialing' ? to('trialing') : refuse('invalid_transition');

    case 'trial_ended':
      return from === 'trialing' ? to('trialing') : refuse('not_trialing');

    case 'pause':
      if (from === 'paused') return refuse('already_paused');
      // A period that is owed is collected (or given up by dunning) first: pausing must not be a way out of a debt.
      if (from === 'past_due' || from === 'unpaid') return refuse('subscription_past_due');
      return from === 'active' || from === 'trialing' ? to('paused') : refuse('invalid_transition');

    case 'resume':
      // Nothing was owed when it was paused (see pause), so it resumes into its trial or, billed at once, active.
      return from === 'paused' ? to(event.inTrial ? 'trialing' : 'active') : refuse('not_paused');

    case 'cancel':
      return to('canceled');
  }
}

function to(status: SubscriptionStatus): SubscriptionDecision {
  return { ok: true, to: status };
}

function refuse(reason: SubscriptionRefusal): SubscriptionDecision {
  return { ok: false, reason };
}
