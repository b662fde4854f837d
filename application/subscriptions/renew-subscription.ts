import type { SettingsReads } from '../../models/settings-cache';
import { ulid } from '../../platform/ids';
import type { AuditEventInput } from '../../domain/audit-event';
import { transitionEventId, type AuditAction, type AuditOutcome } from '../../domain/audit-actions';
import { cycleBoundary, pricingCycleOf, restartedCycle } from '../../domain/billing-period';
import { minimumChargeAmount } from '../../domain/money';
import { attemptStartedEvent, RENEWALS_ACTOR, type SubscriptionAttempt } from '../../domain/payment-audit';
import {
  DAY_MS,
  DEFAULT_DUNNING_POLICY,
  isMerchantSideFailure,
  nextDunningStep,
  type DunningPolicy,
} from '../../domain/dunning';
import { decideSubscription, isTerminal, type SubscriptionEvent } from '../../domain/subscription-state';
import { MAX_DECISIONS } from '../../domain/decision-rounds';
import type { Models } from '../../models';
import { isDuplicateKeyError } from '../../models/errors';
import type { PaymentRecord } from '../../models/payment.model';
import { periodId, type SubscriptionPeriodRecord, type SubscriptionRecord } from '../../models/subscription.model';
import type { Logger } from '../../platform/logger';

export interface RenewDeps {
  models: Pick<
    Models,
    | 'Subscription'
    | 'SubscriptionPeriod'
    | 'Payment'
    | 'Refund'
    | 'SavedPaymentMethod'
    | 'BillingSettings'
    | 'TestClock'
  >;
  /** Queues the charge of a period's payment (the one-off charge path; idempotent by payment id). */
  enqueueCharge: (payment: PaymentRecord) => Promise<void>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /**
   * Where `enqueueAudit` only collects the run's events (the renewals worker: one append for them,
   * application/payments/outcome-audit.ts), sends what was collected so far. Called before each write after which a
   * rerun would not send those events again — the period recorded paid or given up, a balance taken off, the next
   * step's first write after a status move — so a crash after that write has left them queued, as `enqueueAudit`
   * itself did before. Without it each event is queued as it is sent, and there is nothing to do.
   */
  flushAudit?: () => Promise<void>;
  /**
   * Called once a period is paid (again after a crash: it must be idempotent per period): its invoice starts here.
   * `known`: the subscription (and the payment) this run read, so the invoice need not read them again.
   */
  onPeriodPaid?: (
    period: SubscriptionPeriodRecord,
    known?: { subscription: SubscriptionRecord; payment?: PaymentRecord },
  ) => Promise<void>;
  /**
   * Called once dunning gave up on a period (it is `uncollectible`), with the subscription's time then. Idempotent
   * per period, like `onPeriodPaid`: its uncollectible invoice starts here.
   */
  onPeriodUncollectible?: (period: SubscriptionPeriodRecord, at: Date) => Promise<void>;
  /**
   * Refunds `amount` of a payment under `idempotencyKey` through the refund use case (so it gets its credit note like
   * any refund): a canceled subscription's pending credit. Without it such a credit stays on the subscription.
   */
  refundCredit?: (
    payment: PaymentRecord,
    amount: number,
    idempotencyKey: string,
  ) => Promise<{ outcome: string; refundable?: number }>;
  /** The worker's settings cache (models/settings-cache.ts): the billing settings read through it. */
  settings?: SettingsReads;
  logger?: Logger;
  /**
   * A payment whose final outcome (succeeded or failed: neither ever changes) the caller just recorded, as its write
   * returned it: a run inside the charge's job takes it for the period's payment instead of reading it again.
   */
  settledPayment?: PaymentRecord;
}

/** Outcomes a payment never leaves. */
const FINAL_OUTCOMES: ReadonlySet<string> = new Set(['succeeded', 'failed']);

/**
 * What one renewal run came to:
 * - `not_due`: nothing to do yet (or any more);
 * - `charging`: a payment for the period is in flight (its outcome, or the sweep a minute later, runs this again);
 * - `settled`: the subscription moved (a period paid, a failure handled, canceled, expired) and waits for its next date.
 */
export type RenewOutcome = 'not_due' | 'charging' | 'settled';

/** A payment in these may still succeed: never a new attempt (nor an expiry, nor a settlement) before its outcome. */
const OUTCOME_UNKNOWN: ReadonlySet<string> = new Set(['queued', 'processing', 'needs_attention']);
/** Statuses that say a period is owed: a paid current period moves them on. */
const STILL_OWING: ReadonlySet<string> = new Set(['incomplete', 'past_due', 'unpaid']);
/** How long an incomplete first payment may wait for the payer before the subscription expires (Stripe: 23 hours). */
export const INCOMPLETE_EXPIRES_AFTER_MS = 23 * 60 * 60 * 1000;

/**
 * The subscription's time: now, or on a test clock its frozen time — while the clock advances, the time of what it is
 * running (so a payment's outcome is handled at the time its charge was made, not at the end of the jump).
 */
export async function subscriptionNow(
  models: Pick<Models, 'TestClock'>,
  subscription: Pick<SubscriptionRecord, 'testClockId'>,
): Promise<Date> {
  if (!subscription.testClockId) return new Date();
  const clock = await models.TestClock.findById(subscription.testClockId, {
    frozenTime: 1,
    status: 1,
    processingTime: 1,
  }).lean();
  if (clock?.status === 'advancing' && clock.processingTime) return clock.processingTime;
  return clock?.frozenTime ?? new Date();
}

export async function dunningPolicyOf(
  models: Pick<Models, 'BillingSettings'>,
  companyId: string,
  reads?: SettingsReads,
): Promise<DunningPolicy> {
  const settings = reads
    ? await reads.billingSettings(companyId)
    : await models.BillingSettings.findById(companyId, { dunning: 1 }).lean();
  return settings?.dunning ?? DEFAULT_DUNNING_POLICY;
}

/**
 * Renews one subscription: whatever is due at its time (`now`, or its test clock's) happens, once. Safe to run any
 * number of times, concurrently too:
 * - a period is opened by inserting its record under a deterministic id before any gateway call;
 * - its attempts are payments made one at a time, each under a unique (company, `sub:<period>:<n>`) key, so a retry or
 *   a second sweep finds the payment already made; a new attempt only once the previous one failed for certain
 *   (a payment in flight, or needing attention, is waited on: its outcome is unknown);
 * - every subscription write is conditional on the state it was decided from.
 * The dunning policy is read when a failure is handled and again when its retry is due.
 */
export async function renewSubscription(
  deps: RenewDeps,
  subscriptionId: string,
  options: { now?: Date } = {},
): Promise<RenewOutcome> {
  let moved = false;
  // The subscription as this run's last write left it (that write returned it): the next round starts from it instead
  // of reading it again. Any later change by another writer makes the next conditional write miss, and the run reads.
  let carried: SubscriptionRecord | undefined;
  const carry = (next: SubscriptionRecord) => void (carried = next);
  for (let round = 0; round < MAX_DECISIONS * 4; round += 1) {
    // What the step before wrote and sent (a status move's event) is queued before this step writes anything.
    if (round > 0) await deps.flushAudit?.();
    const subscription = carried ?? (await deps.models.Subscription.findById(subscriptionId).lean());
    carried = undefined;
    let current: CurrentPeriodRead | undefined;
    // Whatever else is due, a charged plan change whose payment has an outcome is settled first (once per run).
    if (round === 0 && subscription) {
      // A plan change's charge the change could not make (it stopped after its write) is made now, once.
      await chargeAdjustment(deps, subscription);
      current = await settleOpenRecords(deps, subscription);
    }
    if (subscription?.status === 'canceled') {
      return settleCanceled(deps, subscription, options.now ?? (await subscriptionNow(deps.models, subscription)));
    }
    if (!subscription || isTerminal(subscription.status)) break;
    // A renewal waiting for the payer to finish 3-D Secure is not due at a time: its payment's outcome runs this.
    const waitingOnPayer = subscription.waitingFor === 'payer_action';
    if (!subscription.nextBillingAt && !waitingOnPayer) break;
    const now = options.now ?? (await subscriptionNow(deps.models, subscription));
    if (subscription.nextBillingAt && subscription.nextBillingAt > now && !waitingOnPayer) break;
    const step = await renewStep(deps, subscription, now, { current, carry });
    if (step !== 'again') return step === 'not_due' && moved ? 'settled' : step;
    moved = true;
  }
  return moved ? 'settled' : 'not_due';
}

/**
 * A run's first read of the subscription's open records: its open adjustments are settled (a charged plan change whose
 * payment has an outcome), and its current period is answered if it is open. Not read where no adjustment can be open
 * (`openAdjustments` lists none: `mayHaveOpenAdjustments`): then `openPeriod` reads the current period by its id, or,
 * due at the period's start, tries its insert first. A run inside the charge of the current period reads them all the
 * same (one read, which finds that period open: its insert would only fail).
 */
async function settleOpenRecords(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
): Promise<CurrentPeriodRead | undefined> {
  const id = periodId(subscription._id, subscription.currentPeriod.start);
  const chargedNow = deps.settledPayment?.subscription?.periodId === id;
  if (!mayHaveOpenAdjustments(subscription) && !chargedNow) return undefined;
  const open = await deps.models.SubscriptionPeriod.find({ subscriptionId: subscription._id, status: 'open' }).lean();
  const adjustments = open.filter((record) => record.kind === 'adjustment');
  const settled = await settleAdjustments(deps, subscription, adjustments);
  await trackOpenAdjustments(
    deps,
    subscription,
    adjustments.filter((record) => !settled.includes(record._id)).map((record) => record._id),
  );
  return { open: open.find((record) => record._id === id && record.kind !== 'adjustment') };
}

/**
 * Whether an adjustment of the subscription may be open: its `openAdjustments` lists one, or is not there (a
 * subscription stored before the list), a plan change's charge is still to be made, or it is canceled (its final bill
 * is an adjustment the list does not hold; `settleCanceled` reads it).
 */
function mayHaveOpenAdjustments(
  subscription: Pick<SubscriptionRecord, 'openAdjustments' | 'adjustmentDue' | 'status'>,
): boolean {
  return (
    subscription.openAdjustments === undefined ||
    subscription.openAdjustments.length > 0 ||
    subscription.adjustmentDue !== undefined ||
    subscription.status === 'canceled'
  );
}

/**
 * Brings `openAdjustments` in line with what was just read open (`stillOpen`, after this run settled what it could):
 * - ids listed but no longer open are taken off. Never the charge still to be made (`adjustmentDue`): it is listed
 *   from its plan change on, before its record is inserted. An adjustment never opens again once paid or carried.
 * - a subscription stored before the list gets it, unless it was written since this run read it (a plan change may
 *   have added an adjustment the read did not see): a later run writes it then.
 */
async function trackOpenAdjustments(deps: RenewDeps, subscription: SubscriptionRecord, stillOpen: string[]) {
  const { Subscription } = deps.models;
  const due = subscription.adjustmentDue?.id;
  const listed = subscription.openAdjustments;
  if (listed === undefined) {
    await Subscription.updateOne(
      { _id: subscription._id, updatedAt: subscription.updatedAt, openAdjustments: { $exists: false } },
      { $set: { openAdjustments: [...new Set([...stillOpen, ...(due ? [due] : [])])] } },
    );
    return;
  }
  const closed = listed.filter((id) => id !== due && !stillOpen.includes(id));
  if (closed.length > 0)
    await Subscription.updateOne({ _id: subscription._id }, { $pullAll: { openAdjustments: closed } });
}

/** What a run read before its first step: the current period if it was among the open records (none: not open). */
interface CurrentPeriodRead {
  open: SubscriptionPeriodRecord | undefined;
}

interface StepContext {
  current: CurrentPeriodRead | undefined;
  /** Hands the subscription as a write of this step left it to the next round. */
  carry: (next: SubscriptionRecord) => void;
}

/** One decision and its write; `again` when there is more to do at this time (e.g. a test clock jumped a year). */
async function renewStep(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  now: Date,
  step: StepContext,
): Promise<RenewOutcome | 'again'> {
  const { Subscription } = deps.models;
  const current = subscription.currentPeriod;

  if (
    subscription.status === 'incomplete' &&
    now.getTime() >= subscription.createdAt.getTime() + INCOMPLETE_EXPIRES_AFTER_MS &&
    !(await firstPaymentUnsettled(deps, subscription))
  ) {
    return (await move(deps, subscription, { type: 'first_payment_expired' }, now, {}, ['nextBillingAt']))
      ? 'settled'
      : 'again';
  }
  if (subscription.status === 'paused') {
    // Paused bills nothing; only a cancel at period end still happens, at that period's end.
    if (subscription.cancelAtPeriodEnd && now >= current.end) {
      return (await cancelMove(deps, subscription, now, current.end)) ? 'settled' : 'again';
    }
    await Subscription.updateOne(
      { _id: subscription._id, status: 'paused' },
      subscription.cancelAtPeriodEnd ? { $set: { nextBillingAt: current.end } } : { $unset: { nextBillingAt: 1 } },
    );
    return 'not_due';
  }

  // Recorded paid by the move that followed its payment (a paid period never changes): not read again at its end.
  if (subscription.status === 'active' && subscription.paidThrough?.getTime() === current.end.getTime()) {
    return periodSettled(deps, subscription, now, step.carry);
  }
  const { period, firstAttempt } = await openPeriod(deps, subscription, now, step.current);
  if (firstAttempt) return chargeNamedPayment(deps, subscription, period, now, firstAttempt);
  if (period.status === 'paid' && period.attempts > 0 && STILL_OWING.has(subscription.status)) {
    // The period was paid but the status move after it was lost (a crash between the two writes, or a write decided
    // from a stale read): make it now.
    const payment = period.paymentId ? await deps.models.Payment.findById(period.paymentId).lean() : null;
    if (payment?.status === 'succeeded') {
      await periodPaid(deps, subscription, period, payment, now, step.carry);
      return 'again';
    }
  }
  const trialPeriod = period.index < 0 && subscription.trialEnd?.getTime() === period.end.getTime();
  const owing = STILL_OWING.has(subscription.status) || (subscription.status === 'trialing' && !trialPeriod);
  if (period.status === 'paid' && !period.paymentId && owing) {
    // Nothing to collect (a bill below the minimum, carried on; or a credit covered it): settled as paid, as a charge
    // that succeeded would be (after a trial too).
    await move(
      deps,
      subscription,
      { type: 'payment_succeeded' },
      now,
      { nextBillingAt: period.end, paidThrough: period.end },
      ['waitingFor'],
    );
    return 'again';
  }
  if (period.status === 'uncollectible' && subscription.status === 'past_due') {
    // Dunning gave the period up, but the status move after it was lost (a crash between the two writes): make it now.
    await endDunning(
      deps,
      subscription,
      (await dunningPolicyOf(deps.models, subscription.companyId, deps.settings)).finalState,
      now,
    );
    return 'again';
  }
  if (period.status === 'uncollectible' && subscription.status === 'unpaid') {
    // Given up, and dunning has ended: nothing more is billed until a new card reopens the period. A run still due
    // from a new card's resume finds it so when another run tried that card first; never a new cycle from here.
    return (await endDunning(deps, subscription, 'unpaid', now)) ? 'settled' : 'again';
  }
  if (period.status !== 'open') return periodSettled(deps, subscription, now, step.carry);

  if (period.paymentId) {
    const known = deps.settledPayment;
    const payment =
      known?._id === period.paymentId && FINAL_OUTCOMES.has(known.status)
        ? known
        : await deps.models.Payment.findById(period.paymentId).lean();
    // The period names its first payment, not made yet: a run stopped between the two writes (or is between them
    // now). It is made under the id the period names, and announced (the event is kept once by its id).
    if (!payment) return chargeNamedPayment(deps, subscription, period, now);
    switch (payment.status) {
      case 'queued':
      case 'processing':
      case 'needs_attention':
        // Its outcome is unknown: never a new attempt before it is settled. The subscription stays due, so its
        // outcome (or the sweep, each minute meanwhile) runs this again.
        await deps.enqueueCharge(payment);
        return 'charging';
      case 'succeeded':
        await periodPaid(deps, subscription, period, payment, now, step.carry);
        return 'again';
      case 'requires_action':
        return (await waitFor(deps, subscription, 'payer_action', now, { type: 'payment_requires_action' }))
          ? 'settled'
          : 'again';
      case 'failed':
        return afterFailure(deps, subscription, period, payment, now);
    }
  }
  await startAttempt(deps, subscription, period, now);
  return 'charging';
}

/** The current period is paid (or given up): the next thing is its end. */
async function periodSettled(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  now: Date,
  carry: StepContext['carry'],
): Promise<RenewOutcome | 'again'> {
  const current = subscription.currentPeriod;
  if (now < current.end) {
    await deps.models.Subscription.updateOne(
      // Conditional on the status too: a cancel made meanwhile may have left `nextBillingAt` at the same instant
      // (on a test clock that has not moved), and a canceled subscription is never billed again.
      {
        _id: subscription._id,
        status: subscription.status,
        'currentPeriod.start': current.start,
        nextBillingAt: subscription.nextBillingAt,
      },
      { $set: { nextBillingAt: current.end } },
    );
    return 'not_due';
  }
  if (subscription.cancelAtPeriodEnd) {
    return (await cancelMove(deps, subscription, now, current.end)) ? 'settled' : 'again';
  }
  await advancePeriod(deps, subscription, carry);
  return 'again';
}

/**
 * Whether the first period's latest payment has no outcome yet (queued, processing, needing attention): an incomplete
 * subscription never expires under it, since it may still succeed (docs/billing-rules.md). The renewal goes on
 * waiting for it instead, and its outcome decides: paid, the subscription is active; failed, it expires.
 */
async function firstPaymentUnsettled(deps: RenewDeps, subscription: SubscriptionRecord): Promise<boolean> {
  const period = await deps.models.SubscriptionPeriod.findById(
    periodId(subscription._id, subscription.currentPeriod.start),
    { paymentId: 1, status: 1 },
  ).lean();
  if (!period?.paymentId || period.status !== 'open') return false;
  const payment = await deps.models.Payment.findById(period.paymentId, { status: 1 }).lean();
  return payment !== null && OUTCOME_UNKNOWN.has(payment.status);
}

/**
 * The current period's record, inserted if it is not there yet. Its amount is fixed then: the plan's (a stub period
 * prorated by its length), plus the pending balance of plan changes — or nothing at all when that bill is below the
 * currency's minimum charge, or a credit covers it. What the period did not take stays pending: the difference is
 * taken off the subscription once (a single conditional write naming the period), so none is lost or counted twice.
 */
async function openPeriod(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  now: Date,
  read?: CurrentPeriodRead,
): Promise<{ period: SubscriptionPeriodRecord; firstAttempt?: PaymentRecord }> {
  const { SubscriptionPeriod } = deps.models;
  const { index, start, end } = subscription.currentPeriod;
  const id = periodId(subscription._id, start);
  // Due at its start, the period is most likely not there yet: its insert is tried first (a duplicate reads the stored
  // one). Otherwise it is read first. Either order ends with the one stored record.
  const likelyNew = subscription.nextBillingAt?.getTime() === start.getTime();
  let period: SubscriptionPeriodRecord | null =
    read?.open ?? (likelyNew ? null : await SubscriptionPeriod.findById(id).lean());
  let firstAttempt: PaymentRecord | undefined;
  if (!period) {
    const isTrial = subscription.trialEnd?.getTime() === end.getTime() && index < 0;
    const base = isTrial ? 0 : baseAmount(subscription);
    // A bill below the gateway's minimum is not sent: nothing is charged and the whole bill is carried onto the next
    // one (so is a credit the bill could not use up).
    const bill = base + (subscription.pendingProration ?? 0);
    const amount = bill >= minimumChargeAmount(subscription.currency) ? bill : 0;
    const written = new Date();
    const record: SubscriptionPeriodRecord = {
      _id: id,
      companyId: subscription.companyId,
      ...(subscription.officeId ? { officeId: subscription.officeId } : {}),
      subscriptionId: subscription._id,
      index,
      start,
      end,
      amount,
      ...(amount !== base ? { proration: amount - base } : {}),
      currency: subscription.currency,
      // Nothing to collect (a trial, or a credit that covers it all): paid as it opens.
      status: amount === 0 ? 'paid' : 'open',
      attempts: 0,
      ...(amount === 0 ? { paidAt: written } : {}),
      createdAt: written,
      updatedAt: written,
    };
    // A period with something to collect is stored with its first attempt recorded: it names the attempt's payment,
    // which is made right after it (one write fewer than recording the attempt on the stored period). The period
    // comes first, so a run that loses its insert has made no payment; one that stops between the two writes leaves
    // a period naming a payment not made yet, which the next run makes (`makeNamedPayment`). Without a saved
    // payment method it opens with no attempt, and the step that follows waits for one.
    const method = record.status === 'open' ? await savedPaymentMethod(deps, subscription) : null;
    const attempt = method
      ? attemptPayment(subscription, record, { number: 1, forNewCard: false, now }, method)
      : undefined;
    if (attempt) {
      record.attempts = 1;
      record.paymentId = attempt._id;
      const card = cardOf(method!, attempt);
      if (card) record.attemptCard = card;
    }
    try {
      await SubscriptionPeriod.insertMany([record], { lean: true });
      period = record;
      firstAttempt = attempt;
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
      period = await SubscriptionPeriod.findById(id).lean();
      if (!period) throw error;
    }
  }
  if (period.proration) {
    await deps.models.Subscription.updateOne(
      { _id: subscription._id, prorationsApplied: { $ne: id } },
      { $inc: { pendingProration: -period.proration }, $push: { prorationsApplied: id } },
    );
  }
  return { period, ...(firstAttempt ? { firstAttempt } : {}) };
}

/**
 * The plan's amount for the current period: a stub period (day-of-month billing) prorated by its length against the
 * full cycle that ends where it does.
 */
function baseAmount(subscription: SubscriptionRecord): number {
  const { index, start, end } = subscription.currentPeriod;
  if (index >= 0) return subscription.amount;
  const full = pricingCycleOf({ ...subscription.cycle, interval: subscription.interval }, subscription.currentPeriod);
  return Math.round(
    (subscription.amount * (end.getTime() - start.getTime())) / (full.end.getTime() - full.start.getTime()),
  );
}

/** The next period becomes current (once: conditional on the period it was decided from), due at its start. */
async function advancePeriod(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  carry?: StepContext['carry'],
): Promise<void> {
  const { index, end } = subscription.currentPeriod;
  const cycle = { ...subscription.cycle, interval: subscription.interval };
  // Period k ends at boundary k+1; the periods before the cycle (a trial, a stub) end at boundary 0.
  const next = { index: index + 1, start: end, end: cycleBoundary(cycle, Math.max(index + 2, 0)) };
  const advanced = await deps.models.Subscription.findOneAndUpdate(
    { _id: subscription._id, status: subscription.status, 'currentPeriod.start': subscription.currentPeriod.start },
    { $set: { currentPeriod: next, nextBillingAt: next.start } },
    { new: true },
  ).lean();
  if (advanced) carry?.(advanced);
}

async function startAttempt(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  now: Date,
  forNewCard = false,
): Promise<void> {
  if (!(await chargeAttempt(deps, subscription, period, now, forNewCard))) {
    await waitFor(deps, subscription, 'payment_method', now);
  }
}

/**
 * The period's next attempt: its payment, made once under the unique key `sub:<period>:<attempt>` (a retry or a second
 * run finds it), recorded on the period (conditional on the attempt count it was decided from), then charged. False
 * when the subscription's payment method is gone. `forNewCard`: the attempt a new payment method makes at once, which
 * uses none of the policy's retries (counted in `cardAttempts`).
 */
async function chargeAttempt(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  now: Date,
  forNewCard = false,
): Promise<boolean> {
  const attempt = period.attempts + 1;
  const method = await savedPaymentMethod(deps, subscription);
  if (!method) return false;
  const payment = await insertAttemptPayment(
    deps,
    attemptPayment(subscription, period, { number: attempt, forNewCard, now }, method),
  );
  // The card that this attempt charges, for its invoice (only when the payment is certainly made with it).
  const card = cardOf(method, payment);
  const recorded = await deps.models.SubscriptionPeriod.updateOne(
    { _id: period._id, attempts: period.attempts },
    {
      $set: { attempts: attempt, paymentId: payment._id, ...(card ? { attemptCard: card } : {}) },
      ...(card ? {} : { $unset: { attemptCard: 1 } }),
      ...(forNewCard ? { $inc: { cardAttempts: 1 } } : {}),
    },
  );
  if (recorded.matchedCount === 0) return true; // another run recorded this attempt (with this same payment)
  await announceAttempt(deps, subscription, { ...period, attempts: attempt }, payment, now, forNewCard);
  return true;
}

type SavedMethod = NonNullable<Awaited<ReturnType<typeof savedPaymentMethod>>>;

async function savedPaymentMethod(deps: RenewDeps, subscription: SubscriptionRecord) {
  return deps.models.SavedPaymentMethod.findOne({
    _id: subscription.paymentMethodId,
    companyId: subscription.companyId,
  }).lean();
}

/** Why an attempt is made: the reason its `subscription.attempt_started` event gives. */
function attemptReason(
  period: SubscriptionPeriodRecord,
  attempt: number,
  forNewCard: boolean,
): SubscriptionAttempt['reason'] {
  if (period.kind === 'adjustment') return 'plan_change_invoiced';
  if (attempt === 1) return 'first_attempt';
  return forNewCard ? 'new_payment_method' : 'retry';
}

/**
 * Attempt `attempt` of the period as a payment (not stored yet), under the unique key `sub:<period>:<attempt>`. It
 * records the attempt (why, and the subscription's time `now`): its charge sends the attempt's event from it.
 */
function attemptPayment(
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  attempt: { number: number; forNewCard: boolean; now: Date },
  method: SavedMethod,
  id = `pay_${ulid()}`,
): PaymentRecord {
  const idempotencyKey = `sub:${period._id}:${attempt.number}`;
  const created = new Date();
  return {
    _id: id,
    companyId: subscription.companyId,
    ...(subscription.officeId ? { officeId: subscription.officeId } : {}),
    idempotencyKey,
    requestHash: idempotencyKey,
    amount: period.amount,
    currency: period.currency,
    customer: String(method.stripeCustomerId),
    paymentMethod: String(method.stripePaymentMethodId),
    serviceCategory: 'membership',
    status: 'queued',
    subscription: {
      subscriptionId: subscription._id,
      periodId: period._id,
      attempt: {
        number: attempt.number,
        reason: attemptReason(period, attempt.number, attempt.forNewCard),
        at: attempt.now,
      },
    },
    requestedBy: { type: 'service', id: 'renewals-worker' },
    requestId: `req_${subscription._id}_${period.index}_${attempt.number}`,
    attempts: 0,
    createdAt: created,
    updatedAt: created,
  };
}

/** The attempt's payment, made once: an earlier run that made it under its unique key made the attempt. */
async function insertAttemptPayment(deps: RenewDeps, payment: PaymentRecord): Promise<PaymentRecord> {
  try {
    await deps.models.Payment.insertMany([payment], { lean: true });
    return payment;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const existing = await deps.models.Payment.findOne({
      companyId: payment.companyId,
      idempotencyKey: payment.idempotencyKey,
    }).lean();
    if (!existing) throw error;
    return existing;
  }
}

/**
 * The payment the period names for its latest attempt, made under that id: `payment` as this run built it, or, when
 * an earlier run stopped before making it, built again from the subscription's payment method. If no method is
 * saved this throws: the run is retried, and makes it once the subscription has a method again.
 */
async function makeNamedPayment(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  now: Date,
  payment?: PaymentRecord,
): Promise<PaymentRecord> {
  let built = payment;
  if (!built) {
    const method = await savedPaymentMethod(deps, subscription);
    if (!method) throw new Error(`period ${period._id} names a payment not made, and the payment method is gone`);
    built = attemptPayment(
      subscription,
      period,
      { number: period.attempts, forNewCard: false, now },
      method,
      period.paymentId,
    );
  }
  const made = await insertAttemptPayment(deps, built);
  if (made._id !== period.paymentId) {
    throw new Error(`period ${period._id} names payment ${period.paymentId}, but its attempt is ${made._id}`);
  }
  return made;
}

/** The payment the period names for its first attempt, made (`built` by this run, or built again) and charged. */
async function chargeNamedPayment(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  now: Date,
  built?: PaymentRecord,
): Promise<'charging'> {
  const payment = await makeNamedPayment(deps, subscription, period, now, built);
  await announceAttempt(deps, subscription, period, payment, now, false);
  return 'charging';
}

/** The card a payment is made with, when it is certainly the saved method's. */
function cardOf(method: SavedMethod, payment: PaymentRecord): SubscriptionPeriodRecord['attemptCard'] {
  return method.card && String(method.stripePaymentMethodId) === payment.paymentMethod
    ? { paymentId: payment._id, brand: method.card.brand, last4: method.card.last4 }
    : undefined;
}

/**
 * The attempt this run recorded: its charge, and its event where the payment does not record the attempt (one made
 * before payments did); otherwise the charge sends the event first in its own batch, from the payment.
 */
async function announceAttempt(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  payment: PaymentRecord,
  now: Date,
  forNewCard: boolean,
): Promise<void> {
  if (!payment.subscription?.attempt) {
    const number = period.attempts;
    const attempt = { number, reason: attemptReason(period, number, forNewCard), at: now };
    const event = attemptStartedEvent({
      ...payment,
      subscription: { subscriptionId: subscription._id, periodId: period._id, attempt },
    });
    if (event) await deps.enqueueAudit(event);
  }
  await deps.enqueueCharge(payment);
}

/**
 * A plan change billed now (`always_invoice`): the difference is its own record (kind `adjustment`, one per change,
 * inserted under the id the change wrote in `adjustmentDue`) and charged at once, off-session. There is no
 * dunning for it: if the charge fails, the amount is carried onto the next period's bill (`settleAdjustments`).
 */
export async function chargeAdjustment(deps: RenewDeps, subscription: SubscriptionRecord): Promise<void> {
  const due = subscription.adjustmentDue;
  if (!due) return;
  // One per change: its id was written with the change (a test clock may make two at one frozen time).
  const adjustment = await insertAdjustment(deps, subscription, due.id, due.amount, due.at);
  if (adjustment.attempts === 0 && !(await chargeAttempt(deps, subscription, adjustment, due.at))) {
    await carryAdjustment(deps, subscription, adjustment);
  }
  // Its attempt's event (and charge) queued before the mark that keeps a rerun from coming here is cleared.
  await deps.flushAudit?.();
  await deps.models.Subscription.updateOne(
    { _id: subscription._id, 'adjustmentDue.id': due.id },
    { $unset: { adjustmentDue: 1 } },
  );
}

/** An adjustment record (a charge of its own, no dunning), inserted once under `id`; the stored one if it is there. */
async function insertAdjustment(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  id: string,
  amount: number,
  at: Date,
): Promise<SubscriptionPeriodRecord> {
  const now = new Date();
  const record: SubscriptionPeriodRecord = {
    _id: id,
    kind: 'adjustment',
    companyId: subscription.companyId,
    ...(subscription.officeId ? { officeId: subscription.officeId } : {}),
    subscriptionId: subscription._id,
    index: subscription.currentPeriod.index,
    start: at,
    end: subscription.currentPeriod.end,
    amount,
    proration: amount,
    currency: subscription.currency,
    status: 'open',
    attempts: 0,
    createdAt: now,
    updatedAt: now,
  };
  try {
    await deps.models.SubscriptionPeriod.insertMany([record], { lean: true });
    return record;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    return (await deps.models.SubscriptionPeriod.findById(record._id).lean()) ?? record;
  }
}

/**
 * Settles the subscription's charged plan-change adjustments whose payment has an outcome: paid (its invoice hook),
 * or, failed, carried onto the next period's bill. Each adjustment is carried once (the subscription records it).
 */
async function settleAdjustments(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  open: SubscriptionPeriodRecord[],
): Promise<string[]> {
  const settled: string[] = [];
  for (const adjustment of open) {
    if (!adjustment.paymentId) continue;
    const payment = await deps.models.Payment.findById(adjustment.paymentId, { status: 1 }).lean();
    if (payment?.status === 'succeeded') {
      const paidAt = new Date();
      await deps.onPeriodPaid?.({ ...adjustment, status: 'paid', paidAt }, { subscription });
      // Its invoice's events queued before the write after which a rerun would not issue it again.
      await deps.flushAudit?.();
      await deps.models.SubscriptionPeriod.updateOne(
        { _id: adjustment._id, status: 'open' },
        { $set: { status: 'paid', paidAt } },
      );
      settled.push(adjustment._id);
    } else if (payment?.status === 'failed') {
      await carryAdjustment(deps, subscription, adjustment);
      settled.push(adjustment._id);
    }
  }
  return settled;
}

async function carryAdjustment(
  deps: RenewDeps,
  subscription: Pick<SubscriptionRecord, '_id'>,
  adjustment: SubscriptionPeriodRecord,
): Promise<void> {
  // The carry first (guarded: once per adjustment), then the record: a crash between them repeats neither.
  await deps.models.Subscription.updateOne(
    { _id: subscription._id, prorationsApplied: { $ne: adjustment._id } },
    { $inc: { pendingProration: adjustment.amount }, $push: { prorationsApplied: adjustment._id } },
  );
  await deps.models.SubscriptionPeriod.updateOne(
    { _id: adjustment._id, status: 'open' },
    { $set: { status: 'uncollectible' } },
  );
}

async function periodPaid(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  payment: PaymentRecord,
  now: Date,
  carry?: StepContext['carry'],
): Promise<void> {
  // Audited first (a deterministic id): the payment succeeded, so the period is paid whatever happens next.
  await audit(deps, subscription, 'subscription.period_paid', period._id, 'success', now, {
    reason: period.attempts > 1 ? 'paid_after_retry' : 'paid',
    changes: [
      { field: 'amount', before: null, after: String(period.amount) },
      { field: 'paymentId', before: null, after: payment._id },
    ],
  });
  // The hook for its invoice (idempotent per period), before the period is recorded paid: if it fails, the next run
  // finds the period still open with its payment succeeded, and comes here again.
  await deps.onPeriodPaid?.({ ...period, status: 'paid', paidAt: now }, { subscription, payment });
  // The paid event and its invoice's events queued (in one job) before the write after which a rerun sends none again.
  await deps.flushAudit?.();
  const recorded = await deps.models.SubscriptionPeriod.updateOne(
    { _id: period._id, status: 'open', paymentId: payment._id },
    { $set: { status: 'paid', paidAt: now } },
  );
  // The next thing is the period's end; after dunning ended unpaid, a period that ended meanwhile is followed by a new
  // cycle from now (the time that passed while unpaid is never billed). The period recorded paid (by this write, or
  // before it: read so), the subscription says so (`paidThrough`), and its end needs no read of it.
  const restart = subscription.restartOnCollection && now >= period.end && period.kind !== 'adjustment';
  const paid = period.kind !== 'adjustment' && (recorded.matchedCount > 0 || period.status === 'paid');
  const moved = await moveTo(
    deps,
    subscription,
    { type: 'payment_succeeded' },
    now,
    restart
      ? { ...restartedCycle(now, subscription.cycle.timeZone, subscription.interval), nextBillingAt: now }
      : { nextBillingAt: period.end, ...(paid ? { paidThrough: period.end } : {}) },
    subscription.restartOnCollection ? ['waitingFor', 'restartOnCollection'] : ['waitingFor'],
  );
  if (moved) carry?.(moved);
}

async function afterFailure(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  period: SubscriptionPeriodRecord,
  payment: PaymentRecord,
  now: Date,
): Promise<RenewOutcome | 'again'> {
  const failure = { code: payment.failure?.code ?? 'payment_failed', declineCode: payment.failure?.declineCode };
  const merchantSide = isMerchantSideFailure(failure);
  const firstFailureAt = period.firstFailureAt ?? now;
  let failedAt = period.lastFailure?.at ?? now;
  let merchantFailures = period.merchantFailures ?? 0;
  // The period as this run last read or wrote it: a give-up is written only if no one wrote it since.
  let decidedOn = period;
  if (period.lastFailure?.paymentId !== payment._id) {
    failedAt = now;
    if (merchantSide) merchantFailures += 1;
    // A merchant-side failure is counted apart: it starts no dunning window and uses no dunning attempt.
    const recorded = await deps.models.SubscriptionPeriod.findOneAndUpdate(
      { _id: period._id, paymentId: payment._id, 'lastFailure.paymentId': { $ne: payment._id } },
      {
        $set: {
          ...(merchantSide ? {} : { firstFailureAt }),
          lastFailure: { paymentId: payment._id, ...failure, at: now },
        },
        ...(merchantSide ? { $inc: { merchantFailures: 1 } } : {}),
      },
      { new: true },
    ).lean();
    if (recorded) {
      decidedOn = recorded;
      await audit(
        deps,
        subscription,
        'subscription.attempt_failed',
        `${period._id}-${period.attempts}`,
        'failure',
        now,
        {
          reason: failure.code,
        },
      );
      // Sent after its write (a rerun finds the failure recorded and does not send it): queued before any other write.
      await deps.flushAudit?.();
    }
  }
  // A new payment method since that attempt (the payer brought one): collection resumes at once.
  const method = await deps.models.SavedPaymentMethod.findOne(
    { _id: subscription.paymentMethodId, companyId: subscription.companyId },
    { stripePaymentMethodId: 1 },
  ).lean();
  if (method && String(method.stripePaymentMethodId) !== payment.paymentMethod) {
    await startAttempt(deps, subscription, period, now, true);
    return 'charging';
  }
  if (merchantSide) {
    // Not the payer's fault (docs/billing-rules.md): no dunning, no status move; tried again after an hour, then two,
    // four… up to once a day, until the configuration works (an incomplete subscription still expires at 23 hours).
    const backoff = 2 ** Math.min(Math.max(merchantFailures - 1, 0), 5);
    const retryAt = new Date(failedAt.getTime() + Math.min(MERCHANT_SIDE_RETRY_MS * backoff, DAY_MS));
    if (retryAt <= now) {
      await startAttempt(deps, subscription, period, now);
      return 'charging';
    }
    const waiting = await deps.models.Subscription.updateOne(
      { _id: subscription._id, updatedAt: subscription.updatedAt },
      {
        $set: {
          nextBillingAt: subscription.status === 'incomplete' ? minDate(retryAt, expiryOf(subscription)) : retryAt,
        },
      },
    );
    return waiting.matchedCount > 0 ? 'settled' : 'again';
  }
  if (subscription.status === 'incomplete') {
    // The first payment: no dunning; the payer has 23 hours to bring another payment method.
    return (await waitFor(deps, subscription, 'payment_method', now)) ? 'settled' : 'again';
  }
  // The policy as it is now: a change made since the failure applies to this retry.
  const policy = await dunningPolicyOf(deps.models, subscription.companyId, deps.settings);
  // Only the scheduled attempts use the policy's retries: a new card's attempt is one more chance, not one less.
  const failedAttempts = Math.max(1, period.attempts - merchantFailures - (period.cardAttempts ?? 0));
  // A retry already due when this attempt was made (a new card's, late in the window) is passed over.
  const lastFailureAt = payment.subscription?.attempt?.at ?? failedAt;
  const step = nextDunningStep(policy, { failedAttempts, firstFailureAt, lastFailureAt, failure });
  // A hard decline waits for a new card, but no longer than the policy's window; then its end state applies. Unpaid,
  // dunning has ended: a new card's attempt was its one more chance, and the retries the policy had are not made up.
  const decision =
    subscription.status === 'unpaid'
      ? giveUp({ ...policy, finalState: 'unpaid' })
      : step.action === 'wait_for_payment_method' && step.until <= now
        ? giveUp(policy)
        : step;
  switch (decision.action) {
    case 'wait_for_payment_method':
      return (await waitFor(
        deps,
        subscription,
        'payment_method',
        now,
        { type: 'payment_failed', final: false, endState: policy.finalState },
        decision.until,
      ))
        ? 'settled'
        : 'again';
    case 'give_up': {
      // The period first (with its uncollectible invoice), then the status: a run that stops between the two finds
      // the period given up and the subscription still past due, and makes the move then (renewStep).
      await deps.onPeriodUncollectible?.({ ...period, status: 'uncollectible' }, now);
      await deps.flushAudit?.();
      // Conditional on the period as it was decided from, not only on `open`: a new card reopens a given-up period
      // (`open` again), and a run that decided to give it up before that must not give it up a second time.
      const givenUp = await deps.models.SubscriptionPeriod.updateOne(
        { _id: period._id, status: 'open', updatedAt: decidedOn.updatedAt },
        { $set: { status: 'uncollectible' } },
      );
      // Written by someone else since (given up by another run, reopened by a new card): decided again from it.
      if (givenUp.matchedCount === 0) return 'again';
      return (await endDunning(deps, subscription, decision.endState, now)) ? 'settled' : 'again';
    }
    case 'retry':
      if (decision.at <= now) {
        await startAttempt(deps, subscription, period, now);
        return 'charging';
      }
      return (await move(
        deps,
        subscription,
        { type: 'payment_failed', final: false, endState: policy.finalState },
        now,
        { nextBillingAt: decision.at },
      ))
        ? 'settled'
        : 'again';
  }
}

const giveUp = (policy: DunningPolicy) => ({ action: 'give_up' as const, endState: policy.finalState });

/** Dunning gave up: the subscription takes the policy's end state (canceled: its final settlement follows). */
function endDunning(deps: RenewDeps, subscription: SubscriptionRecord, endState: 'unpaid' | 'canceled', now: Date) {
  const ends = endState === 'canceled' ? canceling(now) : undefined;
  return move(
    deps,
    subscription,
    { type: 'payment_failed', final: true, endState },
    now,
    ends?.set ?? {},
    ends?.unset ?? ['nextBillingAt'],
  );
}

/**
 * The write that ends a subscription at `canceledAt`: `nextBillingAt` is set to then, so that its final settlement (a
 * pending balance, an attempt in flight) runs, here or from the sweep should this run stop (`settleCanceled`).
 */
export function canceling(canceledAt: Date): { set: Record<string, unknown>; unset: string[] } {
  return { set: { canceledAt, nextBillingAt: canceledAt }, unset: ['waitingFor'] };
}

const cancelMove = (deps: RenewDeps, subscription: SubscriptionRecord, now: Date, canceledAt: Date) => {
  const { set, unset } = canceling(canceledAt);
  return move(deps, subscription, { type: 'cancel' }, now, set, unset);
};

/**
 * What a canceled subscription still owes or is owed (docs/billing-rules.md, "Cancel"): a pending balance above the
 * minimum charge is billed as a final adjustment (its own record, charged and invoiced like a plan change billed at
 * once); a pending credit is refunded against the last paid period's payment (at most what is left of it), through
 * the refund use case, so it gets its credit note. Once, whatever crashes: the record's id and the refund's key derive
 * from the cancel, and the balance is taken off the subscription in one write guarded by that id. Then its
 * `nextBillingAt` (left set by the cancel) is unset; while the final charge is in flight it stays, and the run says
 * `charging`.
 */
async function settleCanceled(deps: RenewDeps, subscription: SubscriptionRecord, now: Date): Promise<RenewOutcome> {
  const { Subscription, SubscriptionPeriod } = deps.models;
  const id = periodId(`${subscription._id}|final`, subscription.canceledAt ?? now);
  const pending = subscription.pendingProration ?? 0;
  if (pending !== 0 && !subscription.prorationsApplied?.includes(id)) {
    let reason: string;
    let settledAmount = 0;
    if (pending >= minimumChargeAmount(subscription.currency)) {
      await insertAdjustment(deps, subscription, id, pending, subscription.canceledAt ?? now);
      reason = 'final_bill';
      settledAmount = pending;
    } else if (pending < 0) {
      if (!deps.refundCredit) return 'not_due';
      settledAmount = await refundPendingCredit(deps, subscription, -pending, id);
      reason = settledAmount > 0 ? 'credit_refunded' : 'credit_not_refundable';
    } else {
      // Below the minimum, a balance cannot be charged: it is dropped with the subscription.
      reason = 'below_minimum_dropped';
    }
    // Audited before the balance is taken off (a deterministic id): a crash between the two repeats the same event.
    await audit(deps, subscription, 'subscription.final_settled', id, 'success', now, {
      reason,
      changes: [
        { field: 'pendingProration', before: String(pending), after: '0' },
        { field: 'amount', before: null, after: String(settledAmount) },
      ],
    });
    await deps.flushAudit?.();
    await Subscription.updateOne(
      { _id: subscription._id, prorationsApplied: { $ne: id } },
      { $inc: { pendingProration: -pending }, $push: { prorationsApplied: id } },
    );
  }
  const final = await SubscriptionPeriod.findById(id).lean();
  if (final?.status === 'open') {
    if (final.attempts > 0) return 'charging'; // its outcome settles it (settleAdjustments)
    if (await chargeAttempt(deps, subscription, final, now)) return 'charging';
    await SubscriptionPeriod.updateOne({ _id: id, status: 'open' }, { $set: { status: 'uncollectible' } });
  }
  if ((await settleAttemptInFlight(deps, subscription)) === 'charging') return 'charging';
  if (!subscription.nextBillingAt) return 'not_due';
  await Subscription.updateOne(
    { _id: subscription._id, status: 'canceled', nextBillingAt: subscription.nextBillingAt },
    { $unset: { nextBillingAt: 1 } },
  );
  return 'settled';
}

/**
 * A renewal attempt that was in flight when the subscription was canceled: while it has no outcome, `charging` (the
 * cancel left `nextBillingAt` set, so it is looked at again); if it succeeded anyway, the money goes back — the
 * period is invoiced as paid (every charge has its invoice) and the payment refunded in full (its credit note).
 */
async function settleAttemptInFlight(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
): Promise<'charging' | undefined> {
  const period = await deps.models.SubscriptionPeriod.findById(
    periodId(subscription._id, subscription.currentPeriod.start),
  ).lean();
  if (period?.status !== 'open' || !period.paymentId) return undefined;
  const payment = await deps.models.Payment.findById(period.paymentId).lean();
  if (!payment || OUTCOME_UNKNOWN.has(payment.status)) return 'charging';
  if (payment.status !== 'succeeded' || !deps.refundCredit) return undefined;
  const paidAt = payment.completedAt ?? new Date();
  await deps.onPeriodPaid?.({ ...period, status: 'paid', paidAt }, { subscription, payment });
  // Its invoice's events queued before the refund's writes (an invoice collected later sends `paid` after its write).
  await deps.flushAudit?.();
  // Until the refund is recorded the period stays open, so a refusal (busy) is asked again, never forgotten.
  const refunded = await refundUpTo(deps, payment, payment.amount, `sub-canceled-${period._id}`);
  await audit(deps, subscription, 'subscription.late_charge_refunded', period._id, 'success', paidAt, {
    reason: 'succeeded_after_cancel',
    changes: [
      { field: 'paymentId', before: null, after: payment._id },
      { field: 'amount', before: null, after: String(refunded) },
    ],
  });
  await deps.flushAudit?.();
  await deps.models.SubscriptionPeriod.updateOne(
    { _id: period._id, status: 'open' },
    { $set: { status: 'paid', paidAt } },
  );
  return undefined;
}

/**
 * Refunds up to `credit` of the latest paid period's payment that was not disputed; the amount asked back (0 when
 * nothing is left to refund). A refusal that a retry may pass (`busy`) throws: the balance is not taken off the
 * subscription until its refund is recorded.
 */
async function refundPendingCredit(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  credit: number,
  key: string,
): Promise<number> {
  const paid = await deps.models.SubscriptionPeriod.find(
    { subscriptionId: subscription._id, status: 'paid', kind: { $exists: false }, paymentId: { $exists: true } },
    { paymentId: 1 },
  )
    .sort({ start: -1 })
    .limit(12)
    .lean();
  for (const period of paid) {
    const payment = await deps.models.Payment.findById(period.paymentId).lean();
    if (payment?.status !== 'succeeded' || payment.dispute) continue;
    return refundUpTo(deps, payment, credit, `sub-credit-${key}`);
  }
  return 0;
}

/**
 * Refunds `amount` of a payment, or what is left of it when less is (under a key of its own, so a rerun asks the
 * same); the amount asked back, 0 when nothing is left. A refusal a retry may pass (`busy`) throws: the run is tried
 * again, and what it was to settle stays recorded as owed until then.
 */
async function refundUpTo(deps: RenewDeps, payment: PaymentRecord, amount: number, key: string): Promise<number> {
  const asked = await deps.refundCredit!(payment, amount, key);
  if (asked.outcome === 'exceeds') {
    const rest = asked.refundable ?? 0;
    return rest > 0 && rest < amount ? refundUpTo(deps, payment, rest, `${key}-${rest}`) : 0;
  }
  if (asked.outcome === 'key_conflict') {
    // An earlier run asked under this key for another amount (the balance changed since): that refund is the one.
    const earlier = await deps.models.Refund.findOne({ companyId: payment.companyId, idempotencyKey: key }).lean();
    if (earlier) return earlier.amount;
  }
  if (asked.outcome !== 'accepted') {
    throw new Error(`the refund of payment ${payment._id} was not recorded: ${asked.outcome}`);
  }
  return amount;
}

/**
 * A merchant-side failure is tried again this long after it, doubling with each one up to once a day (no dunning
 * attempt is used).
 */
export const MERCHANT_SIDE_RETRY_MS = 60 * 60 * 1000;
const expiryOf = (subscription: Pick<SubscriptionRecord, 'createdAt'>) =>
  new Date(subscription.createdAt.getTime() + INCOMPLETE_EXPIRES_AFTER_MS);
const minDate = (a: Date, b: Date) => (a <= b ? a : b);

/**
 * Collection stops until someone acts: a new payment method, or the payer finishing 3-D Secure; or, at the latest,
 * until `deadline` (the dunning window's end), when the sweep looks at it again.
 */
async function waitFor(
  deps: RenewDeps,
  subscription: SubscriptionRecord,
  what: 'payment_method' | 'payer_action',
  now: Date,
  event?: SubscriptionEvent,
  deadline?: Date,
): Promise<boolean> {
  // An incomplete subscription still expires: the sweep looks at it again then.
  const expiry = expiryOf(subscription);
  const wakeAt = subscription.status === 'incomplete' ? expiry : deadline;
  const next = wakeAt ? { nextBillingAt: wakeAt } : {};
  const unset = wakeAt ? [] : ['nextBillingAt'];
  if (!event || subscription.status === 'incomplete') {
    const updated = await deps.models.Subscription.updateOne(
      { _id: subscription._id, status: subscription.status, nextBillingAt: subscription.nextBillingAt },
      { $set: { waitingFor: what, ...next }, ...(unset.length ? { $unset: { nextBillingAt: 1 } } : {}) },
    );
    return updated.matchedCount > 0;
  }
  return move(deps, subscription, event, now, { waitingFor: what, ...next }, unset);
}

/**
 * Moves the subscription as the state machine decides, with a write conditional on the status and period it was
 * decided from; the transition is audited. False when the subscription changed meanwhile (the caller decides again).
 */
export async function move(
  deps: { models: Pick<Models, 'Subscription'>; enqueueAudit: RenewDeps['enqueueAudit'] },
  subscription: SubscriptionRecord,
  event: SubscriptionEvent,
  now: Date,
  set: Record<string, unknown> = {},
  unset: string[] = [],
): Promise<boolean> {
  return (await moveTo(deps, subscription, event, now, set, unset)) !== null;
}

/** `move`, answering the subscription as its write left it (null when it changed meanwhile). */
async function moveTo(
  deps: { models: Pick<Models, 'Subscription'>; enqueueAudit: RenewDeps['enqueueAudit'] },
  subscription: SubscriptionRecord,
  event: SubscriptionEvent,
  now: Date,
  set: Record<string, unknown> = {},
  unset: string[] = [],
): Promise<SubscriptionRecord | null> {
  const decision = decideSubscription(subscription.status, event);
  const to = decision.ok ? decision.to : subscription.status;
  const update: Record<string, unknown> = { $set: { ...set, status: to } };
  if (unset.length > 0) update.$unset = Object.fromEntries(unset.map((field) => [field, 1]));
  const moved: SubscriptionRecord | null = await deps.models.Subscription.findOneAndUpdate(
    {
      _id: subscription._id,
      status: subscription.status,
      'currentPeriod.start': subscription.currentPeriod.start,
      updatedAt: subscription.updatedAt,
    },
    update,
    { new: true },
  ).lean();
  if (!moved) return null;
  if (to !== subscription.status) {
    await audit(
      deps,
      subscription,
      'subscription.status_changed',
      // Per decision: the state it was decided from (a retry of the same decision repeats the id; a second move to
      // the same status in one period is another event).
      `${subscription.currentPeriod.start.getTime()}-${subscription.updatedAt.getTime()}-${to}`,
      'success',
      now,
      {
        reason: `${subscription.status}_to_${to}`,
      },
    );
  }
  return moved;
}

export async function audit(
  deps: Pick<RenewDeps, 'enqueueAudit'>,
  subscription: Pick<SubscriptionRecord, '_id' | 'companyId' | 'officeId'>,
  action: AuditAction,
  key: string,
  outcome: AuditOutcome,
  at: Date,
  extra: Pick<AuditEventInput, 'reason' | 'changes'> & { actor?: AuditEventInput['actor'] } = {},
): Promise<void> {
  const { actor, ...rest } = extra;
  await deps.enqueueAudit({
    eventId: transitionEventId(action, `${subscription._id}-${key}`),
    companyId: subscription.companyId,
    ...(subscription.officeId ? { officeId: subscription.officeId } : {}),
    action,
    outcome,
    actor: actor ?? RENEWALS_ACTOR,
    resource: { type: 'subscription', id: subscription._id },
    ...rest,
    occurredAt: at.toISOString(),
  });
}
