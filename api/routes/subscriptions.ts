import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  changeSubscription,
  createPlan,
  createSubscription,
  manageDepsFor,
  type ManageDeps,
  type Refusal,
} from '../../application/subscriptions/manage-subscriptions';
import { abandonClockAdvance, requestClockAdvance } from '../../application/subscriptions/test-clocks';
import { isTimeZone } from '../../domain/billing-period';
import { dunningPolicySchema } from '../../domain/dunning';
import { OFFICE_ID } from '../../domain/payment-request';
import { PLAN_ID, planRequestSchema } from '../../domain/plan';
import { PRORATION_BEHAVIORS } from '../../domain/proration';
import { SUBSCRIPTION_STATUSES } from '../../domain/subscription-state';
import type { Models } from '../../models';
import { isCustomerRef, SAVED_PAYMENT_METHOD_ID } from '../../models/saved-payment-method.model';
import type { PlanRecord } from '../../models/plan.model';
import type { SubscriptionRecord } from '../../models/subscription.model';
import type { TestClockRecord } from '../../models/test-clock.model';
import type { Queues } from '../../queues';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { enqueueClockAdvance, SUBSCRIPTION_ID, TEST_CLOCK_ID } from '../../queues/renewals.queue';
import { writeAudited } from '../audited-change';
import type { AccessGuard } from '../access-guard';
import { ApiError } from '../errors';
import { parse, requireIdempotencyKey, scopeIdSchema } from '../validation';
import { ulid } from '../../platform/ids';

export interface SubscriptionRouteDeps {
  models: Models;
  queues: Pick<Queues, 'renewals' | 'audit' | 'charges'>;
  maxAmount: number;
  production: boolean;
  guard: Pick<AccessGuard, 'authorize' | 'authorizeList' | 'record' | 'prepare' | 'send'>;
}

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();
export const subscriptionParams = companyParams.extend({ subscriptionId: z.string().regex(SUBSCRIPTION_ID) }).strict();
export const clockParams = companyParams.extend({ testClockId: z.string().regex(TEST_CLOCK_ID) }).strict();
const customerRef = z.string().refine(isCustomerRef, 'must be an opaque payer reference (letters, digits, _ and -)');
const savedMethodId = z.string().regex(SAVED_PAYMENT_METHOD_ID, 'must be a saved payment method id (spm_…)');
export const instant = z.iso.datetime({ offset: true }).transform((value) => new Date(value));
/** A test clock's time, to create it at or advance it to. */
export const clockBody = z.object({ frozenTime: instant }).strict();

export const subscriptionBody = z
  .object({
    planId: z.string().regex(PLAN_ID, 'must be a plan id (plan_…)'),
    customerRef,
    paymentMethodId: savedMethodId,
    officeId: z.string().regex(OFFICE_ID, 'must be an office id').optional(),
    trialDays: z.number().int().min(0).max(730).optional(),
    billingDayOfMonth: z.number().int().min(1).max(31).optional(),
    testClockId: z.string().regex(TEST_CLOCK_ID).optional(),
  })
  .strict();

/** One change per request, each its own shape. */
export const changeBody = z.union([
  z.object({ cancelAt: z.enum(['now', 'period_end', 'none']) }).strict(),
  z
    .object({
      planId: z.string().regex(PLAN_ID, 'must be a plan id (plan_…)'),
      prorationBehavior: z.enum(PRORATION_BEHAVIORS).default('create_prorations'),
    })
    .strict(),
  z.object({ paymentMethodId: savedMethodId }).strict(),
  z.object({ pause: z.literal(true) }).strict(),
  z.object({ resume: z.literal(true) }).strict(),
]);

export const listQuery = z
  .object({
    officeId: scopeIdSchema.optional(),
    status: z.enum(SUBSCRIPTION_STATUSES).optional(),
    customerRef: customerRef.optional(),
    planId: z.string().regex(PLAN_ID).optional(),
    limit: z.coerce.number().int().min(1).max(100).default(25),
    after: z.string().regex(SUBSCRIPTION_ID).optional(),
  })
  .strict();

export const billingSettingsBody = z
  .object({
    timeZone: z.string().refine(isTimeZone, 'must be an IANA time zone, e.g. America/Chicago'),
    dunning: dunningPolicySchema,
  })
  .strict();

function presentPlan(plan: PlanRecord) {
  return {
    id: plan._id,
    category: plan.category,
    name: plan.name,
    amount: plan.amount,
    currency: plan.currency,
    interval: plan.interval,
    trialDays: plan.trialDays,
    ...(plan.officeIds ? { officeIds: plan.officeIds } : {}),
    createdAt: plan.createdAt.toISOString(),
  };
}

const iso = (date: Date | undefined) => date?.toISOString();

function presentSubscription(subscription: SubscriptionRecord, latestPeriod?: Record<string, unknown>) {
  return {
    id: subscription._id,
    status: subscription.status,
    planId: subscription.planId,
    customerRef: subscription.customerRef,
    paymentMethodId: subscription.paymentMethodId,
    ...(subscription.officeId ? { officeId: subscription.officeId } : {}),
    amount: subscription.amount,
    currency: subscription.currency,
    interval: subscription.interval,
    currentPeriod: {
      start: iso(subscription.currentPeriod.start),
      end: iso(subscription.currentPeriod.end),
    },
    ...(subscription.trialEnd ? { trialEnd: iso(subscription.trialEnd) } : {}),
    nextBillingAt: iso(subscription.nextBillingAt) ?? null,
    ...(subscription.waitingFor ? { waitingFor: subscription.waitingFor } : {}),
    cancelAtPeriodEnd: subscription.cancelAtPeriodEnd,
    ...(subscription.canceledAt ? { canceledAt: iso(subscription.canceledAt) } : {}),
    ...(subscription.pendingProration ? { pendingProration: subscription.pendingProration } : {}),
    ...(subscription.testClockId ? { testClockId: subscription.testClockId } : {}),
    ...(latestPeriod ? { latestPeriod } : {}),
    createdAt: iso(subscription.createdAt),
  };
}

function presentClock(clock: TestClockRecord) {
  return { id: clock._id, frozenTime: clock.frozenTime.toISOString(), status: clock.status };
}

function refused(refusal: Refusal): never {
  const status = refusal.code === 'company_shredded' ? 410 : refusal.status;
  throw new ApiError(status, refusal.code, refusal.message);
}

export function registerSubscriptionRoutes(app: FastifyInstance, deps: SubscriptionRouteDeps): void {
  const { models, guard } = deps;
  const actorOf = (request: FastifyRequest) => ({
    type: request.principal!.subjectType,
    id: request.principal!.subject,
  });
  /** The use case's audit events (deterministic ids, the caller as actor) carry the request id. */
  const withAudit = (request: FastifyRequest): ManageDeps =>
    manageDepsFor({
      models,
      queues: deps.queues,
      enqueueAudit: (event) => enqueueAuditEvent(deps.queues.audit, { ...event, requestId: request.id }),
    });

  app.post('/v1/companies/:companyId/plans', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    const { companyId } = parse(companyParams, request.params);
    const idempotencyKey = requireIdempotencyKey(request);
    const body = parse(planRequestSchema(deps.maxAmount), request.body);
    await guard.authorize(request, 'subscriptions:manage', { companyId });
    const result = await createPlan(withAudit(request), {
      companyId,
      idempotencyKey,
      request: body,
      actor: actorOf(request),
    });
    if (result.outcome === 'refused') refused(result);
    if (result.replayed) void reply.header('idempotent-replayed', 'true');
    return reply.status(201).send(presentPlan(result.plan));
  });

  app.get('/v1/companies/:companyId/plans', async (request) => {
    const { companyId } = parse(companyParams, request.params);
    await guard.authorize(request, 'subscriptions:read', { companyId });
    const plans = await models.Plan.find({ companyId }).sort({ _id: 1 }).limit(500).lean();
    return { items: plans.map(presentPlan) };
  });

  app.post('/v1/companies/:companyId/subscriptions', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    const { companyId } = parse(companyParams, request.params);
    const idempotencyKey = requireIdempotencyKey(request);
    const body = parse(subscriptionBody, request.body);
    if (body.testClockId && deps.production) throw testClocksRefused();
    await guard.authorize(request, 'subscriptions:manage', { companyId, officeId: body.officeId });
    const result = await createSubscription(withAudit(request), {
      companyId,
      idempotencyKey,
      request: body,
      actor: actorOf(request),
      requestId: request.id,
    });
    if (result.outcome === 'refused') refused(result);
    if (result.replayed) void reply.header('idempotent-replayed', 'true');
    return reply.status(201).send(presentSubscription(result.subscription));
  });

  app.get('/v1/companies/:companyId/subscriptions/:subscriptionId', async (request) => {
    const params = parse(subscriptionParams, request.params);
    const subscription = await models.Subscription.findOne({
      _id: params.subscriptionId,
      companyId: params.companyId,
    }).lean();
    await guard.authorize(request, 'subscriptions:read', {
      companyId: params.companyId,
      officeId: subscription?.officeId,
      resource: { type: 'subscription', id: params.subscriptionId },
    });
    if (!subscription) throw new ApiError(404, 'subscription_not_found', 'no such subscription');
    const period = await models.SubscriptionPeriod.findOne({
      subscriptionId: subscription._id,
      kind: { $exists: false },
    })
      .sort({ start: -1 })
      .lean();
    return presentSubscription(
      subscription,
      period
        ? {
            start: iso(period.start),
            end: iso(period.end),
            amount: period.amount,
            status: period.status,
            attempts: period.attempts,
            ...(period.paymentId ? { paymentId: period.paymentId } : {}),
            ...(period.lastFailure ? { lastFailure: { code: period.lastFailure.code } } : {}),
          }
        : undefined,
    );
  });

  app.get('/v1/companies/:companyId/subscriptions', async (request) => {
    const { companyId } = parse(companyParams, request.params);
    const query = parse(listQuery, request.query);
    const scope = await guard.authorizeList(request, 'subscriptions:read', { companyId, officeId: query.officeId });
    const filter: Record<string, unknown> = { companyId };
    if (scope.officeIds) filter.officeId = { $in: scope.officeIds };
    if (query.officeId) filter.officeId = query.officeId;
    if (query.status) filter.status = query.status;
    if (query.customerRef) filter.customerRef = query.customerRef;
    if (query.planId) filter.planId = query.planId;
    if (query.after) filter._id = { $lt: query.after };
    const page = await models.Subscription.find(filter)
      .sort({ _id: -1 })
      .limit(query.limit + 1)
      .lean();
    const items = page.slice(0, query.limit).map((subscription) => presentSubscription(subscription));
    return { items, nextCursor: page.length > query.limit ? items[items.length - 1]?.id : null };
  });

  app.patch('/v1/companies/:companyId/subscriptions/:subscriptionId', { bodyLimit: 16 * 1024 }, async (request) => {
    const params = parse(subscriptionParams, request.params);
    const change = parse(changeBody, request.body);
    const subscription = await models.Subscription.findOne(
      { _id: params.subscriptionId, companyId: params.companyId },
      { officeId: 1 },
    ).lean();
    await guard.authorize(request, 'subscriptions:manage', {
      companyId: params.companyId,
      officeId: subscription?.officeId,
      resource: { type: 'subscription', id: params.subscriptionId },
    });
    const result = await changeSubscription(withAudit(request), {
      companyId: params.companyId,
      subscriptionId: params.subscriptionId,
      change,
      actor: actorOf(request),
    });
    if (result.outcome === 'refused') refused(result);
    return presentSubscription(result.subscription);
  });

  app.put('/v1/companies/:companyId/billing-settings', { bodyLimit: 8 * 1024 }, async (request) => {
    const { companyId } = parse(companyParams, request.params);
    const body = parse(billingSettingsBody, request.body);
    await guard.authorize(request, 'subscriptions:manage', { companyId });
    const before = await models.BillingSettings.findById(companyId).lean();
    // Stored with its audit event, or 503 (api/audited-change.ts).
    const saved = await writeAudited(request, guard, {
      holder: models.BillingSettings,
      id: companyId,
      event: {
        companyId,
        action: 'billing_settings.updated',
        resource: { type: 'billing_settings', id: companyId },
        changes: [
          { field: 'timeZone', before: before?.timeZone ?? null, after: body.timeZone },
          {
            field: 'dunning.retryDelaysDays',
            before: before ? before.dunning.retryDelaysDays.join(',') : null,
            after: body.dunning.retryDelaysDays.join(','),
          },
          { field: 'dunning.finalState', before: before?.dunning.finalState ?? null, after: body.dunning.finalState },
        ],
      },
      write: (pendingAudit) =>
        models.BillingSettings.findOneAndUpdate(
          { _id: companyId },
          { $set: { timeZone: body.timeZone, dunning: body.dunning, ...pendingAudit, updatedBy: actorOf(request) } },
          { upsert: true, new: true },
        ).lean(),
    });
    return { timeZone: saved!.timeZone, dunning: saved!.dunning };
  });

  app.post('/v1/companies/:companyId/test-clocks', { bodyLimit: 4 * 1024 }, async (request, reply) => {
    const { companyId } = parse(companyParams, request.params);
    if (deps.production) throw testClocksRefused();
    const body = parse(clockBody, request.body);
    await guard.authorize(request, 'subscriptions:manage', { companyId });
    const clock = (
      await models.TestClock.create({ _id: `clock_${ulid()}`, companyId, frozenTime: body.frozenTime, status: 'ready' })
    ).toObject();
    await guard.record(request, {
      companyId,
      action: 'test_clock.created',
      resource: { type: 'test_clock', id: clock._id },
    });
    return reply.status(201).send(presentClock(clock));
  });

  app.get('/v1/companies/:companyId/test-clocks/:testClockId', async (request) => {
    const params = parse(clockParams, request.params);
    await guard.authorize(request, 'subscriptions:read', { companyId: params.companyId });
    const clock = await models.TestClock.findOne({ _id: params.testClockId, companyId: params.companyId }).lean();
    if (!clock) throw new ApiError(404, 'test_clock_not_found', 'no such test clock');
    return presentClock(clock);
  });

  app.post(
    '/v1/companies/:companyId/test-clocks/:testClockId/advance',
    { bodyLimit: 4 * 1024 },
    async (request, reply) => {
      const params = parse(clockParams, request.params);
      if (deps.production) throw testClocksRefused();
      const body = parse(clockBody, request.body);
      await guard.authorize(request, 'subscriptions:manage', { companyId: params.companyId });
      const result = await requestClockAdvance(models, {
        companyId: params.companyId,
        testClockId: params.testClockId,
        to: body.frozenTime,
      });
      switch (result.outcome) {
        case 'not_found':
          throw new ApiError(404, 'test_clock_not_found', 'no such test clock');
        case 'busy':
          throw new ApiError(
            409,
            'test_clock_advancing',
            'the clock is still advancing; wait until its status is ready',
          );
        case 'backwards':
          throw new ApiError(422, 'test_clock_backwards', 'a test clock only moves forward');
        case 'already_there':
          // A repeat: that advance was taken (and audited and queued) before; GET shows when it is ready.
          return reply.status(202).send(presentClock(result.clock));
      }
      // Until its job is queued nothing would finish the advance: a failure before then (the audit trail or the queue
      // unavailable) puts the clock back, ready at its previous time, so the client's retry is taken.
      try {
        await guard.record(request, {
          companyId: params.companyId,
          action: 'test_clock.advanced',
          resource: { type: 'test_clock', id: params.testClockId },
          changes: [{ field: 'frozenTime', before: null, after: result.clock.frozenTime.toISOString() }],
        });
      } catch (error) {
        await abandonClockAdvance(models, result);
        throw error;
      }
      // The clock stays `advancing` until the job has run what is due (GET shows `ready` then).
      try {
        await enqueueClockAdvance(deps.queues.renewals, result.clock._id, result.clock.frozenTime);
      } catch (error) {
        await abandonClockAdvance(models, result);
        request.log.warn({ err: error }, 'could not queue a test clock advance');
        throw new ApiError(503, 'queue_unavailable', 'the advance could not be queued; try again');
      }
      return reply.status(202).send(presentClock(result.clock));
    },
  );
}

const testClocksRefused = () => new ApiError(403, 'test_clocks_disabled', 'test clocks exist only outside production');
