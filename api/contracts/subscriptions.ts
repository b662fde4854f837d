import { z } from 'zod';
import { DEFAULT_PAYMENT_MAX_AMOUNT } from '../../platform/config';
import { INTERVAL_UNITS } from '../../domain/billing-period';
import { PLAN_CATEGORIES, PLAN_ID, planRequestSchema } from '../../domain/plan';
import { SUBSCRIPTION_STATUSES } from '../../domain/subscription-state';
import { COLLECTION_WAITS, PERIOD_STATUSES } from '../../models/subscription.model';
import { TEST_CLOCK_STATUSES } from '../../models/test-clock.model';
import { SUBSCRIPTION_ID, TEST_CLOCK_ID } from '../../queues/renewals.queue';
import {
  billingSettingsBody,
  changeBody,
  clockParams,
  companyParams,
  clockBody,
  listQuery,
  subscriptionBody,
  subscriptionParams,
} from '../routes/subscriptions';
import { currencyCode, failure, minorAmount, type OperationSpec, timestamp, withExamples } from '../openapi/spec';
import { REQUEST_EXAMPLES } from './examples';

/**
 * The routes build their body schemas from PAYMENT_MAX_AMOUNT (`config.payments.maxAmount`); the document shows them
 * with that setting's default, so a change of the default changes the document (and `npm run openapi:check` says so).
 * A deployment that sets another bound answers with it.
 */
const DOCUMENTED_MAX_AMOUNT = DEFAULT_PAYMENT_MAX_AMOUNT;

const planId = z.string().regex(PLAN_ID);
const subscriptionId = z.string().regex(SUBSCRIPTION_ID);
const testClockId = z.string().regex(TEST_CLOCK_ID);
const interval = z.strictObject({ unit: z.enum(INTERVAL_UNITS), count: z.number().int().positive() });

/** A plan (presentPlan). */
const planView = z.strictObject({
  id: planId,
  category: z.enum(PLAN_CATEGORIES),
  name: z.string(),
  amount: minorAmount,
  currency: currencyCode,
  interval,
  trialDays: z.number().int().nonnegative(),
  officeIds: z
    .array(z.string())
    .optional()
    .meta({ description: 'The offices that may sell it; absent: every office of the company.' }),
  createdAt: timestamp,
});

/** A subscription (presentSubscription). */
const subscriptionView = z.strictObject({
  id: subscriptionId,
  status: z.enum(SUBSCRIPTION_STATUSES),
  planId,
  customerRef: z.string(),
  paymentMethodId: z.string(),
  officeId: z.string().optional(),
  amount: minorAmount,
  currency: currencyCode,
  interval,
  currentPeriod: z.strictObject({ start: timestamp, end: timestamp }),
  trialEnd: timestamp.optional(),
  nextBillingAt: timestamp
    .nullable()
    .meta({ description: 'When it is next looked at (a renewal, a retry); null while nothing is due.' }),
  waitingFor: z
    .enum(COLLECTION_WAITS)
    .optional()
    .meta({ description: 'Collection stopped until a new payment method (hard decline) or the payer (3-D Secure).' }),
  cancelAtPeriodEnd: z.boolean(),
  canceledAt: timestamp.optional(),
  pendingProration: z
    .number()
    .int()
    .optional()
    .meta({ description: "A plan change's proration (signed, minor units) the next period's bill carries." }),
  testClockId: testClockId.optional(),
  createdAt: timestamp,
});

/** The latest billing period of one subscription, as its GET shows it. */
const latestPeriod = z.strictObject({
  start: timestamp,
  end: timestamp,
  amount: minorAmount,
  status: z.enum(PERIOD_STATUSES),
  attempts: z.number().int().nonnegative(),
  paymentId: z.string().optional().meta({ description: 'The latest payment made for it.' }),
  lastFailure: z.strictObject({ code: z.string() }).optional(),
});

const billingSettingsView = z.strictObject({
  timeZone: z.string(),
  dunning: z.strictObject({
    retryDelaysDays: z.array(z.number().int().positive()),
    finalState: z.enum(['unpaid', 'canceled']),
  }),
});

/** A test clock (presentClock). */
const clockView = z.strictObject({ id: testClockId, frozenTime: timestamp, status: z.enum(TEST_CLOCK_STATUSES) });

const TAG = 'Subscriptions';
const MANAGE = 'subscriptions:manage';
const READ = 'subscriptions:read';

const keyRequired = failure('No usable `Idempotency-Key`.', 'idempotency_key_required');
const companyShredded = failure("The company's data was crypto-shredded.", 'company_shredded');
const testClocksDisabled = failure('Test clocks exist only outside production.', 'test_clocks_disabled');
const clockNotFound = failure('No such test clock in this company.', 'test_clock_not_found');
const subscriptionNotFound = failure('No such subscription in this company.', 'subscription_not_found');
/** The saved card a subscription would be charged with, checked (application/subscriptions/manage-subscriptions.ts). */
const PAYMENT_METHOD_REFUSALS = [
  'payment_method_not_found',
  'payment_method_of_another_payer',
  'payment_method_of_another_office',
  'payment_method_of_another_account',
];

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'post',
    route: '/v1/companies/:companyId/plans',
    operationId: 'createPlan',
    summary: 'Create a plan',
    description:
      'A membership or payment plan: a generic name, an amount per interval, an optional trial, optionally only at some offices. A retry with the same `Idempotency-Key` and body answers the same plan (header `idempotent-replayed: true`). Audited (`plan.created`).',
    tag: TAG,
    permission: MANAGE,
    params: companyParams,
    body: withExamples(planRequestSchema(DOCUMENTED_MAX_AMOUNT), ...REQUEST_EXAMPLES.createPlan),
    idempotencyKey: 'required',
    responses: {
      201: { description: 'The plan (or, on a retry, the plan the key already made).', schema: planView },
      400: keyRequired,
      404: failure('No such company.', 'company_not_found'),
      410: companyShredded,
      422: failure('The `Idempotency-Key` was already used with another body.', 'idempotency_key_conflict'),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/plans',
    operationId: 'listPlans',
    summary: "List the company's plans",
    description: 'Oldest first, up to 500.',
    tag: TAG,
    permission: READ,
    params: companyParams,
    responses: {
      200: { description: "The company's plans.", schema: z.strictObject({ items: z.array(planView) }) },
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/subscriptions',
    operationId: 'createSubscription',
    summary: 'Subscribe a payer to a plan',
    description:
      'Charged with a saved card of the payer: at once (`incomplete` until the first payment succeeds), or at the end of a trial (`trialing`). `testClockId` puts it on a test clock (outside production only). A retry with the same `Idempotency-Key` and body answers the same subscription (header `idempotent-replayed: true`). Audited (`subscription.created`).',
    tag: TAG,
    permission: MANAGE,
    params: companyParams,
    body: withExamples(subscriptionBody, ...REQUEST_EXAMPLES.createSubscription),
    idempotencyKey: 'required',
    responses: {
      201: {
        description: 'The subscription (or, on a retry, the one the key already made, as it was created).',
        schema: subscriptionView,
      },
      400: keyRequired,
      403: testClocksDisabled,
      404: failure(
        'No such company, plan or test clock.',
        'company_not_found',
        'plan_not_found',
        'test_clock_not_found',
      ),
      410: companyShredded,
      422: failure(
        'The key was used with another body, the plan is not offered at the office or is in another currency than its payment configuration, or the payment method is not usable for this payer, office or gateway account; nothing was created.',
        'idempotency_key_conflict',
        'office_not_in_plan',
        'currency_mismatch',
        ...PAYMENT_METHOD_REFUSALS,
      ),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/subscriptions',
    operationId: 'listSubscriptions',
    summary: "List the company's subscriptions",
    description: 'Newest first, filtered; an office-scoped token sees its offices’ subscriptions only.',
    tag: TAG,
    permission: READ,
    params: companyParams,
    query: listQuery,
    responses: {
      200: {
        description: 'A page of subscriptions; `nextCursor` is the id to pass as `after` (null on the last page).',
        schema: z.strictObject({ items: z.array(subscriptionView), nextCursor: subscriptionId.nullable() }),
      },
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/subscriptions/:subscriptionId',
    operationId: 'getSubscription',
    summary: 'Read a subscription',
    tag: TAG,
    permission: READ,
    params: subscriptionParams,
    responses: {
      200: {
        description: 'The subscription, with its latest billing period once it has one.',
        schema: subscriptionView.extend({
          latestPeriod: latestPeriod
            .optional()
            .meta({ description: 'The latest billing period: what it bills, its status and payment attempts.' }),
        }),
      },
      404: subscriptionNotFound,
    },
  },
  {
    method: 'patch',
    route: '/v1/companies/:companyId/subscriptions/:subscriptionId',
    operationId: 'changeSubscription',
    summary: 'Change a subscription: cancel, change plan or card, pause or resume',
    description:
      'One change per request. A plan change keeps the interval and is prorated as `prorationBehavior` says; a new card resumes collection at once where it was behind. A change that meets a renewal is decided again on the new state. Audited (`subscription.updated`).',
    tag: TAG,
    permission: MANAGE,
    params: subscriptionParams,
    body: withExamples(changeBody, ...REQUEST_EXAMPLES.changeSubscription),
    responses: {
      200: { description: 'The subscription as changed.', schema: subscriptionView },
      404: failure('No such subscription, or no such plan to change to.', 'subscription_not_found', 'plan_not_found'),
      409: failure(
        'The subscription is in a state that does not take this change (ended, already canceling or not, already paused or not, owing a period), or kept changing meanwhile; nothing changed.',
        'subscription_canceled',
        'not_canceling',
        'already_canceling',
        'already_paused',
        'subscription_past_due',
        'not_paused',
        'invalid_transition',
        'concurrent_change',
      ),
      422: failure(
        'The plan or card asked for is the current one, or is not usable for this subscription (office, currency, interval, payer, gateway account); nothing changed.',
        'same_plan',
        'office_not_in_plan',
        'currency_mismatch',
        'interval_mismatch',
        'same_payment_method',
        ...PAYMENT_METHOD_REFUSALS,
      ),
    },
  },
  {
    method: 'put',
    route: '/v1/companies/:companyId/billing-settings',
    operationId: 'putBillingSettings',
    summary: "Set the company's billing time zone and dunning policy",
    description:
      'The time zone periods are counted in, and when failed renewals are retried and what a subscription becomes when the retries run out. Audited (`billing_settings.updated`).',
    tag: TAG,
    permission: MANAGE,
    params: companyParams,
    body: withExamples(billingSettingsBody, ...REQUEST_EXAMPLES.putBillingSettings),
    responses: {
      200: { description: 'The settings as stored.', schema: billingSettingsView },
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/test-clocks',
    operationId: 'createTestClock',
    summary: 'Create a test clock (outside production)',
    description:
      'Frozen time for testing subscriptions, like Stripe’s test clocks: subscriptions created on it see its time. Audited (`test_clock.created`).',
    tag: TAG,
    permission: MANAGE,
    params: companyParams,
    body: withExamples(clockBody, ...REQUEST_EXAMPLES.testClock),
    responses: {
      201: { description: 'The clock, `ready`.', schema: clockView },
      403: testClocksDisabled,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/test-clocks/:testClockId',
    operationId: 'getTestClock',
    summary: 'Read a test clock',
    description: 'An advance is done when its status is `ready` again.',
    tag: TAG,
    permission: READ,
    params: clockParams,
    responses: {
      200: { description: 'The clock.', schema: clockView },
      404: clockNotFound,
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/test-clocks/:testClockId/advance',
    operationId: 'advanceTestClock',
    summary: 'Move a test clock forward (outside production)',
    description:
      'Records the new time (`advancing`) and queues a job that runs everything due up to it, in time order: trial ends, renewals, dunning retries, expiries. Poll the clock until it is `ready`. Audited (`test_clock.advanced`). Asking again for the time the clock already has (a retry whose first answer was lost) is answered 202 with the clock as it is, and changes nothing.',
    tag: TAG,
    permission: MANAGE,
    params: clockParams,
    body: withExamples(clockBody, ...REQUEST_EXAMPLES.testClock),
    responses: {
      202: {
        description: 'Accepted: the clock at its new time, `advancing` (a repeat: the clock as it is now).',
        schema: clockView,
      },
      403: testClocksDisabled,
      404: clockNotFound,
      409: failure('The clock is still advancing; wait until its status is `ready`.', 'test_clock_advancing'),
      422: failure('A test clock only moves forward.', 'test_clock_backwards'),
      503: failure('The advance could not be queued (the clock is `ready` again); try again.', 'queue_unavailable'),
    },
  },
];
