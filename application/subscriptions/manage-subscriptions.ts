import { createHash } from 'node:crypto';
import { ulid } from '../../platform/ids';
import type { AuditEventInput } from '../../domain/audit-event';
import { MAX_DECISIONS } from '../../domain/decision-rounds';
import { isSameGatewayAccount } from '../../domain/gateway-account';
import { cycleBoundary, dayOfMonthAnchor, pricingCycleOf, restartedCycle } from '../../domain/billing-period';
import { minimumChargeAmount } from '../../domain/money';
import { resolvePaymentConfig } from '../../domain/payment-config';
import type { PlanRequest } from '../../domain/plan';
import { prorate, type ProrationBehavior } from '../../domain/proration';
import { decideSubscription, isTerminal, type SubscriptionEvent } from '../../domain/subscription-state';
import type { Models } from '../../models';
import { isShreddedDataError } from '../../models/encryption';
import { isDuplicateKeyError } from '../../models/errors';
import { loadPaymentLevels } from '../../models/payment-config';
import { resolveGatewayAccess } from '../gateway-access';
import type { PlanRecord } from '../../models/plan.model';
import { periodId, type SubscriptionRecord } from '../../models/subscription.model';
import { enqueueCharge } from '../../queues/charges.queue';
import type { Queues } from '../../queues';
import { enqueueRenewal } from '../../queues/renewals.queue';
import { audit, canceling, chargeAdjustment, move, subscriptionNow, type RenewDeps } from './renew-subscription';

export const DEFAULT_TIME_ZONE = 'UTC';

type Actor = { type: 'user' | 'service'; id: string };

export interface ManageDeps {
  models: Pick<
    Models,
    | 'Company'
    | 'Office'
    | 'Plan'
    | 'Subscription'
    | 'SubscriptionPeriod'
    | 'SavedPaymentMethod'
    | 'SetupIntent'
    | 'BillingSettings'
    | 'TestClock'
  >;
  /** Queues a renewal now (a first payment, collection resumed); the sweep does it a minute later should this fail. */
  enqueueRenewal: (subscription: SubscriptionRecord) => Promise<void>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** Charges a plan change's difference at once (always_invoice): application/subscriptions/renew-subscription.ts. */
  chargeAdjustment: (subscription: SubscriptionRecord) => Promise<void>;
}

/** The dependencies of these use cases, wired to the queues (the api, the workers and the demo seed share them). */
export function manageDepsFor(input: {
  models: Models;
  queues: Pick<Queues, 'renewals' | 'charges'>;
  enqueueAudit: ManageDeps['enqueueAudit'];
}): ManageDeps {
  const { models, queues, enqueueAudit } = input;
  const renew: RenewDeps = {
    models,
    enqueueCharge: (payment) => enqueueCharge(queues.charges, { paymentId: payment._id, requestId: payment.requestId }),
    enqueueAudit,
  };
  return {
    models,
    enqueueRenewal: (subscription) => enqueueRenewal(queues.renewals, subscription),
    enqueueAudit,
    chargeAdjustment: (subscription) => chargeAdjustment(renew, subscription),
  };
}

/** A refusal: the HTTP status the api answers with, a reason code, and a sentence. Nothing was changed. */
export interface Refusal {
  outcome: 'refused';
  status: 404 | 409 | 422;
  code: string;
  message: string;
}
const refuse = (status: Refusal['status'], code: string, message: string): Refusal => ({
  outcome: 'refused',
  status,
  code,
  message,
});

const hashOf = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('hex');

/** Inserts under the unique (company, Idempotency-Key) index; a retry with the same body finds its record. */
async function insertOnce<T extends { companyId: string; idempotencyKey: string; requestHash: string }>(
  model: {
    insertMany(docs: T[], options: { lean: true }): Promise<unknown>;
    findOne(filter: object): { lean(): PromiseLike<unknown> };
  },
  record: T,
): Promise<{ record: T; replayed: boolean } | Refusal> {
  try {
    await model.insertMany([record], { lean: true });
    return { record, replayed: false };
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const existing = (await model
      .findOne({ companyId: record.companyId, idempotencyKey: record.idempotencyKey })
      .lean()) as T | null;
    if (!existing) throw error;
    if (existing.requestHash !== record.requestHash) {
      return refuse(
        422,
        'idempotency_key_conflict',
        'this Idempotency-Key was already used with a different request body',
      );
    }
    return { record: existing, replayed: true };
  }
}

async function companyUsable(models: Pick<Models, 'Company'>, companyId: string): Promise<Refusal | undefined> {
  const company = await models.Company.findById(companyId, { shreddedAt: 1 }).lean();
  if (!company) return refuse(404, 'company_not_found', 'no such company');
  if (company.shreddedAt) return refuse(409, 'company_shredded', "the company's data was crypto-shredded");
  return undefined;
}

/** The currency the office's (or company's) payment configuration takes, when it names one. */
async function configuredCurrency(models: ManageDeps['models'], companyId: string, officeId?: string) {
  try {
    const levels = await loadPaymentLevels(models, { companyId, officeId }, { officeOnlyWhenUsed: true });
    const resolved = resolvePaymentConfig(levels.company, levels.office);
    return resolved.ok ? resolved.settings.defaultCurrency?.toLowerCase() : undefined;
  } catch (error) {
    if (isShreddedDataError(error)) return undefined;
    throw error;
  }
}

export async function createPlan(
  deps: Pick<ManageDeps, 'models' | 'enqueueAudit'>,
  input: { companyId: string; idempotencyKey: string; request: PlanRequest; actor: Actor },
): Promise<{ outcome: 'created'; plan: PlanRecord; replayed: boolean } | Refusal> {
  const unusable = await companyUsable(deps.models, input.companyId);
  if (unusable) return unusable;
  const now = new Date();
  const { officeIds, ...rest } = input.request;
  const inserted = await insertOnce<PlanRecord>(deps.models.Plan, {
    _id: `plan_${ulid()}`,
    companyId: input.companyId,
    ...(officeIds ? { officeIds: [...new Set(officeIds)].sort() } : {}),
    ...rest,
    idempotencyKey: input.idempotencyKey,
    requestHash: hashOf(input.request),
    createdBy: input.actor,
    createdAt: now,
    updatedAt: now,
  });
  if ('outcome' in inserted) return inserted;
  const { record: plan } = inserted;
  await deps.enqueueAudit({
    eventId: `evt-plan-created-${plan._id}`,
    companyId: plan.companyId,
    action: 'plan.created',
    outcome: 'success',
    actor: input.actor,
    resource: { type: 'plan', id: plan._id },
    changes: [
      { field: 'amount', before: null, after: String(plan.amount) },
      { field: 'currency', before: null, after: plan.currency },
      { field: 'interval', before: null, after: `${plan.interval.count} ${plan.interval.unit}` },
    ],
    occurredAt: plan.createdAt.toISOString(),
  });
  return { outcome: 'created', plan, replayed: inserted.replayed };
}

export interface SubscriptionRequest {
  planId: string;
  customerRef: string;
  paymentMethodId: string;
  officeId?: string;
  trialDays?: number;
  /** Bill on this day of the month (clamped to the month's end); default: the anniversary of the start. */
  billingDayOfMonth?: number;
  testClockId?: string;
}

/** The plan, office and payment method a subscription would use, or why not. */
async function checkTerms(
  models: ManageDeps['models'],
  companyId: string,
  terms: { planId: string; officeId?: string; customerRef: string; paymentMethodId?: string },
): Promise<{ plan: PlanRecord } | Refusal> {
  const plan = await models.Plan.findOne({ _id: terms.planId, companyId }).lean();
  if (!plan) return refuse(404, 'plan_not_found', 'no such plan in this company');
  if (plan.officeIds && (!terms.officeId || !plan.officeIds.includes(terms.officeId))) {
    return refuse(422, 'office_not_in_plan', 'the plan is not offered at this office');
  }
  const currency = await configuredCurrency(models, companyId, terms.officeId);
  if (currency && currency !== plan.currency) {
    return refuse(
      422,
      'currency_mismatch',
      `the plan is in ${plan.currency}; the payment configuration takes ${currency}`,
    );
  }
  if (terms.paymentMethodId) {
    const method = await models.SavedPaymentMethod.findOne(
      { _id: terms.paymentMethodId, companyId },
      { customerRef: 1, officeId: 1, setupIntentId: 1 },
    ).lean();
    if (!method) return refuse(422, 'payment_method_not_found', 'no such saved payment method in this company');
    if (method.customerRef !== terms.customerRef) {
      return refuse(422, 'payment_method_of_another_payer', 'the payment method belongs to another payer');
    }
    if (!methodServesOffice(method, terms.officeId)) {
      return refuse(
        422,
        'payment_method_of_another_office',
        "the payment method was saved at another office (under that office's payment configuration)",
      );
    }
    if (!(await methodInServingAccount(models, companyId, terms.officeId, method.setupIntentId))) {
      return refuse(
        422,
        'payment_method_of_another_account',
        'the payment method was saved under another gateway account than the one that would charge it',
      );
    }
  }
  return { plan };
}

/**
 * A card saved at an office (through that office's payment configuration) serves that office's subscriptions only; one
 * saved for the company serves any of its subscriptions.
 */
const methodServesOffice = (method: { officeId?: string }, officeId: string | undefined) =>
  !method.officeId || method.officeId === officeId;

/**
 * Whether a card saved through a SetupIntent lives in the gateway account that now serves the subscription: a
 * PaymentMethod exists in one Stripe account only, so a card saved before the configuration moved to another account
 * (or under the company's configuration, for an office with its own) could never be charged. Unknown either way (no
 * SetupIntent on record, no usable configuration): the charge itself finds out.
 */
async function methodInServingAccount(
  models: ManageDeps['models'],
  companyId: string,
  officeId: string | undefined,
  setupIntentId: string | undefined,
): Promise<boolean> {
  if (!setupIntentId) return true;
  const saved = await models.SetupIntent.findOne(
    { _id: setupIntentId, companyId },
    { configurationId: 1, accountId: 1, livemode: 1 },
  ).lean();
  if (!saved) return true;
  const serving = await resolveGatewayAccess(models, { companyId, ...(officeId ? { officeId } : {}) });
  return !serving.ok || isSameGatewayAccount(saved, serving.account);
}

export async function createSubscription(
  deps: ManageDeps,
  input: { companyId: string; idempotencyKey: string; request: SubscriptionRequest; actor: Actor; requestId: string },
): Promise<{ outcome: 'created'; subscription: SubscriptionRecord; replayed: boolean } | Refusal> {
  const { models } = deps;
  const { request, companyId } = input;
  const unusable = await companyUsable(models, companyId);
  if (unusable) return unusable;
  const checked = await checkTerms(models, companyId, request);
  if ('outcome' in checked) return checked;
  const { plan } = checked;
  let clockTime: Date | undefined;
  if (request.testClockId) {
    const clock = await models.TestClock.findOne({ _id: request.testClockId, companyId }).lean();
    if (!clock) return refuse(404, 'test_clock_not_found', 'no such test clock in this company');
    clockTime = clock.frozenTime;
  }
  const settings = await models.BillingSettings.findById(companyId, { timeZone: 1 }).lean();
  const timeZone = settings?.timeZone ?? DEFAULT_TIME_ZONE;
  const now = clockTime ?? new Date();

  const trialDays = request.trialDays ?? plan.trialDays;
  const trialEnd =
    trialDays > 0
      ? cycleBoundary({ anchor: now, interval: { unit: 'day', count: trialDays }, timeZone }, 1)
      : undefined;
  const startsAt = trialEnd ?? now;
  const day = request.billingDayOfMonth;
  const anchor = day ? dayOfMonthAnchor(startsAt, day, timeZone) : startsAt;
  const cycle = { anchor, timeZone, ...(day ? { dayOfMonth: day } : {}) };
  const boundaries = { ...cycle, interval: plan.interval };
  // Before the cycle: a trial, then (day-of-month billing) a prorated stub up to the anchor.
  const currentPeriod = trialEnd
    ? { index: anchor > trialEnd ? -2 : -1, start: now, end: trialEnd }
    : anchor > now
      ? { index: -1, start: now, end: anchor }
      : { index: 0, start: anchor, end: cycleBoundary(boundaries, 1) };

  const inserted = await insertOnce<SubscriptionRecord>(models.Subscription, {
    _id: `sub_${ulid()}`,
    companyId,
    ...(request.officeId ? { officeId: request.officeId } : {}),
    planId: plan._id,
    customerRef: request.customerRef,
    paymentMethodId: request.paymentMethodId,
    status: trialEnd ? 'trialing' : 'incomplete',
    amount: plan.amount,
    currency: plan.currency,
    interval: plan.interval,
    cycle,
    currentPeriod,
    ...(trialEnd ? { trialEnd } : {}),
    nextBillingAt: trialEnd ?? now,
    cancelAtPeriodEnd: false,
    openAdjustments: [],
    ...(request.testClockId ? { testClockId: request.testClockId } : {}),
    idempotencyKey: input.idempotencyKey,
    requestHash: hashOf(request),
    requestedBy: input.actor,
    requestId: input.requestId,
    createdAt: now,
    updatedAt: now,
  });
  if ('outcome' in inserted) return inserted;
  const { record: subscription } = inserted;
  await audit(deps, subscription, 'subscription.created', 'created', 'success', subscription.createdAt, {
    actor: input.actor,
    reason: subscription.status,
    changes: [
      { field: 'planId', before: null, after: plan._id },
      { field: 'amount', before: null, after: String(plan.amount) },
    ],
  });
  // The first payment is due now (no trial): queue it rather than wait for the sweep.
  if (subscription.status === 'incomplete') await deps.enqueueRenewal(subscription).catch(() => undefined);
  return { outcome: 'created', subscription, replayed: inserted.replayed };
}

/**
 * A subscription takes a new payment method of its payer. Collection resumes at once where it was behind: after a
 * hard decline, a declined first payment, during dunning (no waiting for the next retry), or after dunning ended
 * `unpaid` (whose open period is collected again).
 * Undefined when the subscription changed meanwhile.
 */
async function useNewPaymentMethod(
  deps: ManageDeps,
  subscription: SubscriptionRecord,
  paymentMethodId: string,
  now: Date,
  actor: Actor,
): Promise<SubscriptionRecord | undefined> {
  const resume = Boolean(subscription.waitingFor) || ['past_due', 'unpaid'].includes(subscription.status);
  if (subscription.status === 'unpaid') {
    await deps.models.SubscriptionPeriod.updateOne(
      { _id: periodId(subscription._id, subscription.currentPeriod.start), status: 'uncollectible' },
      { $set: { status: 'open' } },
    );
  }
  const written = await deps.models.Subscription.updateOne(
    { _id: subscription._id, updatedAt: subscription.updatedAt },
    {
      $set: {
        paymentMethodId,
        ...(resume ? { nextBillingAt: now } : {}),
        ...(subscription.status === 'unpaid' ? { restartOnCollection: true } : {}),
      },
      ...(resume ? { $unset: { waitingFor: 1 } } : {}),
    },
  );
  if (written.matchedCount === 0) return undefined;
  const changed = (await deps.models.Subscription.findById(subscription._id).lean())!;
  await audit(
    deps,
    changed,
    'subscription.updated',
    `payment_method_changed-${changed.updatedAt.getTime()}`,
    'success',
    now,
    {
      actor,
      reason: resume ? 'payment_method_changed_collection_resumed' : 'payment_method_changed',
    },
  );
  if (resume) await deps.enqueueRenewal(changed).catch(() => undefined);
  return changed;
}

/**
 * The payer saved a new payment method (`setup_intent.succeeded`): each of their subscriptions behind on payment
 * (waiting for a method, past due, unpaid) takes it, and collection resumes at once. Returns how many did.
 */
export async function resumeCollectionForPayer(
  deps: ManageDeps,
  method: { _id: string; companyId: string; customerRef: string; officeId?: string },
): Promise<number> {
  const waiting = await deps.models.Subscription.find({
    companyId: method.companyId,
    customerRef: method.customerRef,
    $or: [{ waitingFor: 'payment_method' }, { status: { $in: ['past_due', 'unpaid'] } }],
  }).lean();
  let resumed = 0;
  for (const subscription of waiting) {
    // An ended subscription takes nothing (it would be queued for ever); another office's takes no card of this one.
    if (isTerminal(subscription.status) || subscription.paymentMethodId === method._id) continue;
    if (!methodServesOffice(method, subscription.officeId)) continue;
    const now = await subscriptionNow(deps.models, subscription);
    const actor = { type: 'service' as const, id: 'payment-method-saved' };
    if (await useNewPaymentMethod(deps, subscription, method._id, now, actor)) resumed += 1;
  }
  return resumed;
}

export type SubscriptionChange =
  | { cancelAt: 'now' | 'period_end' | 'none' }
  | { planId: string; prorationBehavior: ProrationBehavior }
  | { paymentMethodId: string }
  | { pause: true }
  | { resume: true };

/**
 * One change to a subscription, decided from its stored state and written conditionally on it (a concurrent change
 * makes this one answer 409, never half-apply). Refusals change nothing.
 */
type ChangeInput = {
  companyId: string;
  subscriptionId: string;
  change: SubscriptionChange;
  actor: Actor;
  officeIds?: string[];
};

/**
 * A change the caller asked for, decided on the subscription as it is. Its write is conditional on what it was decided
 * from; when a renewal moved the subscription meanwhile, the change is decided again on the new state (a few times)
 * rather than answered with a 409 the caller could do nothing about but repeat.
 */
export async function changeSubscription(
  deps: ManageDeps,
  input: ChangeInput,
): Promise<{ outcome: 'changed'; subscription: SubscriptionRecord } | Refusal> {
  for (let round = 1; ; round += 1) {
    const result = await changeOnce(deps, input);
    if (round >= MAX_DECISIONS || result.outcome !== 'refused' || result.code !== 'concurrent_change') return result;
  }
}

async function changeOnce(
  deps: ManageDeps,
  input: ChangeInput,
): Promise<{ outcome: 'changed'; subscription: SubscriptionRecord } | Refusal> {
  const { models } = deps;
  const subscription = await models.Subscription.findOne({
    _id: input.subscriptionId,
    companyId: input.companyId,
    ...(input.officeIds ? { officeId: { $in: input.officeIds } } : {}),
  }).lean();
  if (!subscription) return refuse(404, 'subscription_not_found', 'no such subscription');
  if (isTerminal(subscription.status)) {
    return refuse(
      409,
      'subscription_canceled',
      `the subscription is ${subscription.status}; nothing about it can change`,
    );
  }
  const now = await subscriptionNow(models, subscription);
  const { change } = input;
  let kind: string;
  let set: Record<string, unknown> = {};
  let unset: string[] = [];
  let event: SubscriptionEvent | undefined;
  let renewNow = false;
  let invoiceNow = 0;

  if ('cancelAt' in change) {
    kind =
      change.cancelAt === 'now' ? 'cancel_now' : change.cancelAt === 'none' ? 'cancel_undone' : 'cancel_at_period_end';
    if (change.cancelAt === 'none') {
      // Undone before the period ends: it renews as before (a paused one goes back to waking for nothing).
      if (!subscription.cancelAtPeriodEnd) return refuse(409, 'not_canceling', 'the subscription is not set to end');
      set = { cancelAtPeriodEnd: false };
      if (subscription.status === 'paused') unset = ['nextBillingAt'];
    } else if (change.cancelAt === 'now') {
      event = { type: 'cancel' };
      ({ set, unset } = canceling(now));
      // What is left is settled at once (a pending balance charged or refunded, an attempt in flight): it runs now.
      renewNow = true;
    } else {
      if (subscription.cancelAtPeriodEnd)
        return refuse(409, 'already_canceling', 'the subscription already ends at period end');
      set = {
        cancelAtPeriodEnd: true,
        // Paused, nothing else wakes it at the period's end.
        ...(subscription.status === 'paused' ? { nextBillingAt: subscription.currentPeriod.end } : {}),
      };
    }
  } else if ('planId' in change) {
    kind = 'plan_changed';
    if (change.planId === subscription.planId)
      return refuse(422, 'same_plan', 'the subscription is already on this plan');
    const checked = await checkTerms(models, subscription.companyId, {
      planId: change.planId,
      officeId: subscription.officeId,
      customerRef: subscription.customerRef,
    });
    if ('outcome' in checked) return checked;
    const { plan } = checked;
    if (plan.currency !== subscription.currency) {
      return refuse(
        422,
        'currency_mismatch',
        `the subscription bills in ${subscription.currency}; the plan is in ${plan.currency}`,
      );
    }
    if (plan.interval.unit !== subscription.interval.unit || plan.interval.count !== subscription.interval.count) {
      return refuse(
        422,
        'interval_mismatch',
        'a plan change keeps the billing interval; subscribe to the other plan instead',
      );
    }
    const { start, end } = subscription.currentPeriod;
    // A trial bills nothing, so there is nothing to prorate: the new price applies from the first period.
    const priced = pricingCycleOf(
      { ...subscription.cycle, interval: subscription.interval },
      subscription.currentPeriod,
    );
    const proration =
      subscription.status === 'trialing'
        ? { net: 0 }
        : prorate({
            oldAmount: subscription.amount,
            newAmount: plan.amount,
            periodStart: priced.start,
            periodEnd: end,
            at: now < start ? start : now >= end ? new Date(end.getTime() - 1) : now,
            behavior: change.prorationBehavior,
          });
    set = { planId: plan._id, amount: plan.amount };
    // always_invoice bills a charge at once; otherwise (and a credit, or a charge below the currency's minimum) it is
    // carried on the next period's bill, which a credit lowers, never below zero.
    invoiceNow =
      change.prorationBehavior === 'always_invoice' && proration.net >= minimumChargeAmount(subscription.currency)
        ? proration.net
        : 0;
    if (proration.net !== 0 && invoiceNow === 0) {
      set.pendingProration = (subscription.pendingProration ?? 0) + proration.net;
    }
    if (invoiceNow > 0) {
      // Written with the change: charged just below, or, should this stop first, by the renewal the sweep runs now.
      const id = periodId(`${subscription._id}|adjustment|${ulid()}`, now);
      set.adjustmentDue = { id, amount: invoiceNow, at: now };
      // Listed as open from this write on (a subscription stored before the list gets it from its next renewal).
      if (subscription.openAdjustments) set.openAdjustments = [...subscription.openAdjustments, id];
      if (subscription.status === 'active') set.nextBillingAt = now;
    }
  } else if ('paymentMethodId' in change) {
    if (change.paymentMethodId === subscription.paymentMethodId) {
      return refuse(422, 'same_payment_method', 'the subscription already uses this payment method');
    }
    const checked = await checkTerms(models, subscription.companyId, {
      planId: subscription.planId,
      officeId: subscription.officeId,
      customerRef: subscription.customerRef,
      paymentMethodId: change.paymentMethodId,
    });
    if ('outcome' in checked && checked.code !== 'plan_not_found') return checked;
    const changed = await useNewPaymentMethod(deps, subscription, change.paymentMethodId, now, input.actor);
    return changed ? { outcome: 'changed', subscription: changed } : concurrentChange();
  } else if ('pause' in change) {
    kind = 'paused';
    event = { type: 'pause' };
    // Nothing is billed while paused; a cancel at period end still fires at that period's end.
    if (subscription.cancelAtPeriodEnd) set = { nextBillingAt: subscription.currentPeriod.end };
    else unset = ['nextBillingAt'];
  } else {
    kind = 'resumed';
    // Inside its trial it goes on with the trial, and before the period paid before the pause ends, with that period;
    // otherwise a new cycle starts now and is billed at once (Stripe's billing_cycle_anchor: now): the periods that
    // passed while paused are never billed.
    const { currentPeriod } = subscription;
    const inTrial = currentPeriod.index < 0 && subscription.trialEnd !== undefined && subscription.trialEnd > now;
    const goesOn =
      inTrial ||
      (now < currentPeriod.end &&
        (
          await models.SubscriptionPeriod.findById(periodId(subscription._id, currentPeriod.start), {
            status: 1,
          }).lean()
        )?.status === 'paid');
    event = { type: 'resume', inTrial };
    set = goesOn
      ? { nextBillingAt: currentPeriod.end }
      : { ...restartedCycle(now, subscription.cycle.timeZone, subscription.interval), nextBillingAt: now };
    renewNow = !goesOn;
  }

  if (event) {
    const decision = decideSubscription(subscription.status, event);
    if (!decision.ok)
      return refuse(409, decision.reason, `cannot ${kind.replace(/_/g, ' ')} a ${subscription.status} subscription`);
    if (!(await move(deps, subscription, event, now, set, unset))) return concurrentChange();
  } else {
    const update: Record<string, unknown> = { $set: set };
    if (unset.length > 0) update.$unset = Object.fromEntries(unset.map((field) => [field, 1]));
    const written = await models.Subscription.updateOne(
      { _id: subscription._id, updatedAt: subscription.updatedAt },
      update,
    );
    if (written.matchedCount === 0) return concurrentChange();
  }
  const changed = (await models.Subscription.findById(subscription._id).lean())!;
  await audit(deps, changed, 'subscription.updated', `${kind}-${changed.updatedAt.getTime()}`, 'success', now, {
    actor: input.actor,
    reason: kind,
  });
  if (renewNow) await deps.enqueueRenewal(changed).catch(() => undefined);
  if (invoiceNow > 0) await deps.chargeAdjustment(changed);
  return { outcome: 'changed', subscription: changed };
}

const concurrentChange = () =>
  refuse(409, 'concurrent_change', 'the subscription changed while this change was being made; read it and try again');
