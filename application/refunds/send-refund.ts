import type { AuditEventInput } from '../../domain/audit-event';
import { GatewayError, type GatewayRefund, type PaymentGateway } from '../../domain/payment-gateway';
import { refundRequestedEvent, toReasonCode } from '../../domain/refund-audit';
import { isRefundHandedOver, type RefundStatus } from '../../domain/refund-status';
import type { Models } from '../../models';
import { applyRefundToLedger, holdRefund } from '../../models/refund-ledger.model';
import type { RefundFailure, RefundRecord } from '../../models/refund.model';
import type { Logger } from '../../platform/logger';
import { resolveGatewayAccess } from '../gateway-access';
import { followRefund, moveRefund, type FollowRefundDeps, type RefundActor } from './move-refund';

export interface SendRefundDeps {
  models: Pick<Models, 'Company' | 'Office' | 'Payment' | 'Refund' | 'RefundLedger'>;
  gateway: Pick<PaymentGateway, 'createRefund' | 'findRefund'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** A succeeded refund's credit note (see followRefund). */
  onRefundSucceeded?: FollowRefundDeps['onRefundSucceeded'];
  logger: Logger;
}

export const REFUND_WORKER_ACTOR: RefundActor = { type: 'system', id: 'refund-worker' };

/**
 * What sending one refund came to:
 * - `recorded`: the refund's stored status (what the gateway answered, or what someone else recorded first);
 * - `failed`: this attempt recorded the refund failed or canceled (the code is on the record), never to be retried;
 * - `needs_attention`: an earlier attempt may have made the refund and this one could not ask (the money stays held);
 * - `not_found`: there is no such refund (`disappeared`: it went away while being sent).
 * Transient gateway errors (network, 5xx, 429) are thrown, after the code is kept as the refund's `lastError`.
 */
export type SendRefundOutcome =
  | { outcome: 'recorded'; status: RefundStatus }
  | { outcome: 'failed'; code: string }
  | { outcome: 'needs_attention'; code: string }
  | { outcome: 'not_found' | 'disappeared' };

/**
 * Sends one refund to the gateway. Safe to run any number of times for the same
 * refund: it re-reads state, sends Stripe at most one refund (idempotency key =
 * refund id; a retry first looks for a refund an earlier attempt made, in case
 * Stripe's 24-hour idempotency window has passed), and records what Stripe says.
 * Bad configuration and refusals stop at once (`failed`); network errors, 5xx
 * and 429 are thrown for the caller to retry with backoff.
 */
export async function sendRefund(
  deps: SendRefundDeps,
  input: { refundId: string; jobId?: string },
): Promise<SendRefundOutcome> {
  const { refundId, jobId } = input;
  const { Refund, Payment } = deps.models;
  const log = deps.logger;

  const stored = await Refund.findById(refundId).lean();
  if (!stored) return { outcome: 'not_found' };
  // The ingress enqueues this too; repeating it here means a lost enqueue there cannot lose the event.
  await deps.enqueueAudit(refundRequestedEvent(stored));

  if (isRefundHandedOver(stored.status)) {
    await followRefund(stored, deps, REFUND_WORKER_ACTOR, jobId);
    log.info({ status: stored.status }, 'refund already handed to the gateway; nothing to do');
    return { outcome: 'recorded', status: stored.status };
  }

  const refund = await Refund.findOneAndUpdate(
    { _id: refundId, status: { $in: ['queued', 'processing'] } },
    { $set: { status: 'processing' }, $inc: { attempts: 1 } },
    { new: true },
  ).lean();
  if (!refund) {
    const current = await Refund.findById(refundId).lean();
    return current ? { outcome: 'recorded', status: current.status } : { outcome: 'not_found' };
  }

  const settled = async (): Promise<RefundRecord | undefined> => {
    const current = await Refund.findById(refundId).lean();
    if (!current) return undefined;
    await followRefund(current, deps, REFUND_WORKER_ACTOR, jobId);
    log.info({ status: current.status, reason: current.failure?.code }, 'refund recorded');
    return current;
  };

  const fail = async (failure: RefundFailure): Promise<SendRefundOutcome> => {
    // Nothing reached Stripe: the hold goes back first, then the refund is recorded failed.
    await applyRefundToLedger(deps.models.RefundLedger, { ...refund, status: 'failed' });
    await Refund.updateOne(
      { _id: refundId, status: 'processing' },
      { $set: { status: 'failed', failure, completedAt: new Date() }, $unset: { lastError: 1 } },
    );
    if (!(await settled())) return { outcome: 'disappeared' };
    return { outcome: 'failed', code: failure.code };
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

  // An earlier attempt may have made the refund at Stripe: then a problem on our side, or a refusal of anything but
  // the refund itself, cannot make it failed (and free the money for a second refund), only `needs_attention`.
  const mayHaveRefunded = refund.attempts > 1;
  const stuck = async (attention: { code: string; message: string }): Promise<SendRefundOutcome> => {
    const since = new Date();
    await Refund.updateOne(
      { _id: refundId, status: 'processing' },
      { $set: { status: 'needs_attention', attention: { ...attention, since } }, $unset: { lastError: 1 } },
    );
    const current = await settled();
    if (!current) return { outcome: 'disappeared' };
    log.warn(
      { reason: attention.code },
      'refund needs attention: the gateway may have made it, and cannot be asked now',
    );
    return { outcome: 'needs_attention', code: attention.code };
  };

  // The gateway account that served the charge, and its configuration's attestation: the company's, or the office's.
  const target = { companyId: refund.companyId, officeId: payment.officeId };
  const access = await resolveGatewayAccess(deps.models, target, payment.gatewayAccount);
  if (!access.ok) return mayHaveRefunded ? stuck(access.failure) : fail(access.failure);

  let answer: GatewayRefund;
  let creating = false;
  try {
    const found = { paymentIntentId: payment.stripePaymentIntentId, refundId };
    const earlier = mayHaveRefunded ? await deps.gateway.findRefund(access.credentials, found) : undefined;
    creating = !earlier;
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
    if (error.kind !== 'transient') {
      const failure = { code: toReasonCode(error.code), message: error.message };
      // Stripe refusing this refund (same idempotency key) is its answer; failing to look for an earlier one is not.
      return creating ? fail(failure) : stuck(failure);
    }
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
  const current = await settled();
  if (!current) return { outcome: 'disappeared' };
  if (moved.applied && (current.status === 'failed' || current.status === 'canceled')) {
    return { outcome: 'failed', code: current.failure?.code ?? current.status };
  }
  return { outcome: 'recorded', status: current.status };
}
