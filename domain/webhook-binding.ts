/**
 * Whether a verified Stripe event may touch one of our records. A signature only proves that some configuration's
 * Stripe account sent the event; `metadata` is whatever the sender wrote (a PaymentIntent made by hand in the
 * dashboard can name any payment). So an event applies only to the Stripe object we created (its id recorded on our
 * record before or when the gateway answered), verified by the same payment configuration that serves the record,
 * and in the mode (live or test) of that configuration's key. Pure: the stripe-events worker gathers the facts.
 */

/**
 * The Stripe objects we create and record: a PaymentIntent on a payment, a Refund on a refund, a SetupIntent on
 * its own record (models/setup-intent.model.ts).
 */
export type BoundObjectKind = 'intent' | 'refund' | 'setup_intent';

export type BindingRefusal =
  | `${BoundObjectKind}_unknown`
  | `${BoundObjectKind}_mismatch`
  | 'config_unknown'
  | 'office_mismatch'
  | 'livemode_mismatch';

export interface EventBindingFacts {
  kind: BoundObjectKind;
  /** The Stripe object id the event is about (`pi_…`, `re_…`, `seti_…`). */
  eventObjectId: string | undefined;
  /** The id we recorded when we created that object; absent when we never did. */
  recordedObjectId: string | undefined;
  /** The configuration that verified the event (`configurationId`). */
  verifiedBy: string | undefined;
  /** The configuration that serves our record now; undefined when it cannot be resolved. */
  servedBy: string | undefined;
  eventLivemode: boolean;
  /** The secret key of the configuration that serves our record. */
  secretKey: string | undefined;
}

export type EventBinding = { bound: true } | { bound: false; reason: BindingRefusal };

/** `sk_live_…` and `rk_live_…` keys act in live mode; every other key (test keys) does not. */
export function isLiveModeKey(secretKey: string): boolean {
  return /^(sk|rk)_live_/.test(secretKey);
}

/**
 * Names a payment configuration the way its webhook endpoint does: `<companyId>` for the company's own,
 * `<companyId>.<officeId>` for an office's. `accountLevel` is the level whose gateway account (secret key) applies.
 */
export function configurationId(companyId: string, officeId: string | undefined, accountLevel: 'company' | 'office') {
  return accountLevel === 'office' && officeId ? `${companyId}.${officeId}` : companyId;
}

export function decideEventBinding(facts: EventBindingFacts): EventBinding {
  const { kind } = facts;
  if (!facts.recordedObjectId) return { bound: false, reason: `${kind}_unknown` };
  if (facts.eventObjectId !== facts.recordedObjectId) return { bound: false, reason: `${kind}_mismatch` };
  if (!facts.servedBy || !facts.verifiedBy || !facts.secretKey) return { bound: false, reason: 'config_unknown' };
  if (facts.servedBy !== facts.verifiedBy) return { bound: false, reason: 'office_mismatch' };
  if (facts.eventLivemode !== isLiveModeKey(facts.secretKey)) return { bound: false, reason: 'livemode_mismatch' };
  return { bound: true };
}
