import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import { GatewayError, type GatewayRefund, type PaymentGateway } from '../domain/payment-gateway';
import { refundOutcomeEvent, refundRequestedEvent, toReasonCode } from '../domain/refund-audit';
import { isRefundHandedOver, type GatewayRefundStatus, type RefundStatus } from '../domain/refund-status';
import { decideRefundTransition } from '../domain/refund-transitions';
import type { Models } from '../models';
import { applyRefundToLedger, holdRefund } from '../models/refund-ledger.model';
import type { RefundFailure, RefundModel, RefundRecord } from '../models/refund.model';
import type { Logger } from '../platform/logger';
import type { AuditEventInput } from '../domain/audit-event';
import { QUEUE_NAMES } from '../queues/names';
import { refundJobSchema, type RefundJob } from '../queues/refunds.queue';
import { resolveGatewayAccess } from '../application/gateway-access';
import { createQueueWorker, storedStatus, type QueueWorkerOptions } from './queue-worker';
import { MAX_DECISIONS } from './stripe-events/handler';

export interface RefundDeps {
  models: Pick<Models, 'Company' | 'Office' | 'Payment' | 'Refund' | 'RefundLedger'>;
  gateway: PaymentGateway;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  logger: Logger;
}

export interface RefundResult {
  refundId: string;
  status: RefundStatus;
}

type Actor = AuditEventInput['actor'];
const ACTOR: Actor = { type: 'system', id: 'refund-worker' };

class RefundFailedError extends UnrecoverableError {
  constructor(refundId: string, code: string) {
    super(`refund ${refundId} failed: ${code}`);
  }
}

/** What the gateway says about a refund, as an update of our record. */
export function gatewayRefundUpdate(
  to: GatewayRefundStatus,
  reported: Omit<ReportedRefund, 'status'>,
): { $set: Record<string, unknown>; $unset: Record<string, 1> } {
  const set: Record<string, unknown> = { status: to };
  const unset: Record<string, 1> = { lastError: 1 };
  if (reported.stripeRefundId) set.stripeRefundId = reported.stripeRefundId;
  if (to === 'succeeded' || to === 'failed' || to === 'canceled') set.completedAt = new Date();
  if (to === 'failed') {
    const failure: RefundFailure = {
      code: toReasonCode(reported.failureReason ?? 'refund_failed'),
      message: 'the gateway could not return the money to the payer',
    };
    set.failure = failure;
  } else if (to === 'canceled') {
    set.failure = {
      code: 'refund_canceled',
      message: 'the refund was canceled at the gateway',
    } satisfies RefundFailure;
  } else {
    unset.failure = 1;
  }
  return { $set: set, $unset: unset };
}

export interface ReportedRefund {
  status: GatewayRefundStatus;
  stripeRefundId?: string;
  failureReason?: string;
}

export type RefundMove =
  | { applied: true; from: RefundStatus; refund: RefundRecord }
  | { applied: false; reason: string; refund?: RefundRecord };

/**
 * Moves a refund to what Stripe reports, if `domain/refund-transitions.ts`
 * allows it from the stored status, with a write conditional on that status.
 * The ledger moves first, so a refund never shows succeeded while its payment
 * does not count it yet; the ledger's own rules (a confirmation needs a hold, a
 * release takes a confirmation back) keep it right if the write then loses a race.
 * `ignore` may refuse a refund (another company's, another Stripe refund) with a reason.
 */
export async function moveRefund(
  models: Pick<Models, 'Refund' | 'RefundLedger'>,
  refundId: string,
  reported: ReportedRefund,
  options: { changedBy?: string; ignore?: (refund: RefundRecord) => string | undefined } = {},
): Promise<RefundMove> {
  for (let round = 0; round < MAX_DECISIONS; round += 1) {
    const refund = await models.Refund.findById(refundId).lean();
    if (!refund) return { applied: false, reason: 'refund_not_found' };
    const ignored = options.ignore?.(refund);
    if (ignored) return { applied: false, reason: ignored, refund };
    const decision = decideRefundTransition(refund.status, reported.status);
    if (!decision.apply) return { applied: false, reason: decision.reason, refund };
    await applyRefundToLedger(models.RefundLedger, { ...refund, status: decision.to });
    const update = gatewayRefundUpdate(decision.to, reported);
    if (options.changedBy) update.$set.changedBy = options.changedBy;
    const applied = await models.Refund.findOneAndUpdate({ _id: refundId, status: decision.from }, update, {
      new: true,
    }).lean();
    if (applied) return { applied: true, from: decision.from, refund: applied };
  }
  throw new Error(`refund ${refundId} kept changing while recording what the gateway reported`);
}

/**
 * After a refund moved (or was found moved): the payment's ledger follows the
 * refund's stored status, and a final status is audited. Both are idempotent,
 * so whoever moved it (worker, webhook, a retry of either) may call this.
 */
export async function followRefund(
  refund: RefundRecord,
  deps: { models: Pick<Models, 'RefundLedger'>; enqueueAudit: RefundDeps['enqueueAudit'] },
  actor: Actor,
  jobId?: string,
): Promise<void> {
  await applyRefundToLedger(deps.models.RefundLedger, refund);
  const event = refundOutcomeEvent(refund, actor, jobId);
  if (event) await deps.enqueueAudit(event);
}

/**
 * Refunds one refund. Safe to run any number of times for the same refund: it
 * re-reads state, sends Stripe at most one refund (idempotency key = refund id;
 * a retry first looks for a refund an earlier attempt made, in case Stripe's
 * 24-hour idempotency window has passed), and records what Stripe says. Bad
 * configuration and refusals stop at once; network errors, 5xx and 429 are
 * thrown for BullMQ to retry with backoff.
 */
export async function processRefund(job: Job<RefundJob>, deps: RefundDeps): Promise<RefundResult> {
  const parsed = refundJobSchema.safeParse(job.data);
  if (!parsed.success) throw new UnrecoverableError('invalid refund job payload');
  const { refundId, requestId } = parsed.data;
  const { Refund, Payment } = deps.models;
  const log = deps.logger.child({
    queue: QUEUE_NAMES.refunds,
    jobId: job.id,
    attempt: job.attemptsMade + 1,
    refundId,
    requestId,
  });

  const stored = await Refund.findById(refundId).lean();
  if (!stored) throw new UnrecoverableError(`refund ${refundId} not found`);
  // The ingress enqueues this too; repeating it here means a lost enqueue there cannot lose the event.
  await deps.enqueueAudit(refundRequestedEvent(stored));

  if (isRefundHandedOver(stored.status)) {
    await followRefund(stored, deps, ACTOR, job.id);
    log.info({ status: stored.status }, 'refund already handed to the gateway; nothing to do');
    return { refundId, status: stored.status };
  }

  const refund = await Refund.findOneAndUpdate(
    { _id: refundId, status: { $in: ['queued', 'processing'] } },
    { $set: { status: 'processing' }, $inc: { attempts: 1 } },
    { new: true },
  ).lean();
  if (!refund) {
    return { refundId, status: await storedStatus('refund', refundId, (id) => Refund.findById(id).lean()) };
  }

  const fail = async (failure: RefundFailure): Promise<never> => {
    // Nothing reached Stripe: the hold goes back first, then the refund is recorded failed.
    await applyRefundToLedger(deps.models.RefundLedger, { ...refund, status: 'failed' });
    await Refund.updateOne(
      { _id: refundId, status: 'processing' },
      { $set: { status: 'failed', failure, completedAt: new Date() }, $unset: { lastError: 1 } },
    );
    await settled(Refund, refundId, job, deps, log);
    throw new RefundFailedError(refundId, failure.code);
  };

  const payment = await Payment.findOne({ _id: refund.paymentId, companyId: refund.companyId }).lean();
  if (!payment || payment.status !== 'succeeded' || !payment.stripePaymentIntentId) {
    return fail({ code: 'payment_not_refundable', message: 'the payment did not succeed; there is nothing to refund' });
  }
  // Normally the request's hold is there. If its request stalled past the outbox sweep, which then released the
  // hold, it is taken again here, or the refund stops before anything reaches Stripe.
  const hold = await holdRefund(deps.models.RefundLedger, payment, {
    refundId,
    amount: refund.amount,
    unrecorded: false,
  });
  if (hold.result !== 'held' && hold.result !== 'already_held') {
    return fail({ code: 'refund_exceeds_captured', message: 'the payment has not that much left to refund' });
  }

  // The same effective configuration (and attestation) as the charge: the company's, or the office's.
  const access = await resolveGatewayAccess(deps.models, { companyId: refund.companyId, officeId: payment.officeId });
  if (!access.ok) return fail(access.failure);

  let answer: GatewayRefund;
  try {
    const target = { paymentIntentId: payment.stripePaymentIntentId, refundId };
    const earlier = refund.attempts > 1 ? await deps.gateway.findRefund(access.credentials, target) : undefined;
    answer =
      earlier ??
      (await deps.gateway.createRefund(access.credentials, {
        paymentIntentId: payment.stripePaymentIntentId,
        amount: refund.amount,
        reason: refund.reason,
        metadata: { refund_id: refundId, payment_id: refund.paymentId },
        idempotencyKey: refundId,
      }));
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    if (error.kind !== 'transient') return fail({ code: toReasonCode(error.code), message: error.message });
    await Refund.updateOne({ _id: refundId }, { $set: { lastError: error.code } });
    log.warn({ code: error.code }, 'transient gateway error; will retry');
    throw error;
  }

  // A webhook may have recorded Stripe's answer (or a newer one) first: then the stored status stands.
  const moved = await moveRefund(deps.models, refundId, {
    status: answer.status,
    stripeRefundId: answer.id,
    ...(answer.failureReason ? { failureReason: answer.failureReason } : {}),
  });
  if (!moved.applied) {
    await Refund.updateOne(
      { _id: refundId, stripeRefundId: { $exists: false } },
      { $set: { stripeRefundId: answer.id } },
    );
  }
  const current = await settled(Refund, refundId, job, deps, log);
  if (moved.applied && (current.status === 'failed' || current.status === 'canceled')) {
    throw new RefundFailedError(refundId, current.failure?.code ?? current.status);
  }
  return { refundId, status: current.status };
}

async function settled(
  Refund: RefundModel,
  refundId: string,
  job: Job<RefundJob>,
  deps: RefundDeps,
  log: Logger,
): Promise<RefundRecord> {
  const current = await Refund.findById(refundId).lean();
  if (!current) throw new UnrecoverableError(`refund ${refundId} disappeared`);
  await followRefund(current, deps, ACTOR, job.id);
  log.info({ status: current.status, reason: current.failure?.code }, 'refund recorded');
  return current;
}

export function createRefundsWorker(deps: RefundDeps & QueueWorkerOptions): Worker<RefundJob, RefundResult> {
  return createQueueWorker(QUEUE_NAMES.refunds, processRefund, deps);
}
