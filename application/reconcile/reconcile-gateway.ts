import type { RecordOutcomeDeps } from '../payments/record-outcome';
import type { Queue } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import { GatewayError, type PaymentGateway } from '../../domain/payment-gateway';
import { decideCharge } from '../../domain/payment-outcome';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import type { PaymentRecord } from '../../models/payment.model';
import type { RefundRecord } from '../../models/refund.model';
import type { Logger } from '../../platform/logger';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../../queues/charges.queue';
import { ensureJob } from '../../queues/job-options';
import { enqueueRefund, refundJobId, type RefundJob } from '../../queues/refunds.queue';
import { resolveGatewayAccess } from '../gateway-access';
import { recordPaymentOutcome } from '../payments/record-outcome';
import { followRefund, moveRefund, type FollowRefundDeps } from '../refunds/move-refund';

export interface ReconcileDeps {
  models: Pick<Models, 'Company' | 'Office' | 'Payment' | 'Refund' | 'RefundLedger'>;
  gateway: Pick<PaymentGateway, 'retrievePaymentIntent' | 'findRefund'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** Told of every payment outcome recorded (a subscription's period payment renews its subscription). */
  onOutcome?: RecordOutcomeDeps['onOutcome'];
  /** Told of a succeeded refund (its credit note). */
  onRefundSucceeded?: FollowRefundDeps['onRefundSucceeded'];
  onRefundFailed?: FollowRefundDeps['onRefundFailed'];
  chargesQueue: Queue<ChargeJob>;
  refundsQueue: Queue<RefundJob>;
  logger: Logger;
  /** How long a record waits (since it last changed, or was last asked about) before the gateway is asked. */
  afterMs: number;
  now?: () => Date;
}

/**
 * What one run did: records `asked` about; `settled` by the gateway's answer; `requeued` for their worker (a record
 * that needed attention whose gateway account can be reached again); `unchanged` (the gateway has not decided, or
 * still cannot be asked); `failed` (an error, logged by id; the next run asks again).
 */
export interface ReconcileResult {
  asked: number;
  settled: number;
  requeued: number;
  unchanged: number;
  failed: number;
}

type Verdict = 'settled' | 'requeued' | 'unchanged';

const BATCH = 200;
const ACTOR: AuditEventInput['actor'] = { type: 'system', id: 'gateway-reconcile' };

/**
 * Asks the gateway about what waits on it for longer than `afterMs`: a payment in `requires_action` (the payer
 * left 3-D Secure, or its webhook was lost), a refund `pending` or in `requires_action` (its webhook was lost), and
 * anything that `needs_attention`. It asks only the gateway account that served the payment, and records only the
 * gateway's answer: a record it cannot ask about stays as it is, and is asked about again after `afterMs`.
 */
export async function reconcileWithGateway(deps: ReconcileDeps): Promise<ReconcileResult> {
  const now = deps.now?.() ?? new Date();
  const due = { updatedAt: { $lt: new Date(now.getTime() - deps.afterMs) } };
  const [payments, refunds] = await Promise.all([
    deps.models.Payment.find({ status: { $in: ['requires_action', 'needs_attention'] }, ...due })
      .sort({ updatedAt: 1 })
      .limit(BATCH)
      .lean(),
    deps.models.Refund.find({ status: { $in: ['pending', 'requires_action', 'needs_attention'] }, ...due })
      .sort({ updatedAt: 1 })
      .limit(BATCH)
      .lean(),
  ]);
  const result: ReconcileResult = { asked: 0, settled: 0, requeued: 0, unchanged: 0, failed: 0 };
  const run = async <T extends { _id: string; status: string }>(
    kind: 'payment' | 'refund',
    record: T,
    reconcile: (deps: ReconcileDeps, record: T) => Promise<Verdict>,
    model: { updateOne(filter: object, update: object): PromiseLike<unknown> },
  ) => {
    result.asked += 1;
    try {
      const verdict = await reconcile(deps, record);
      result[verdict] += 1;
      // Asked again only after `afterMs` (the touch moves updatedAt).
      if (verdict === 'unchanged')
        await model.updateOne({ _id: record._id, status: record.status }, { $set: { reconciledAt: now } });
      else
        deps.logger.info(
          { [`${kind}Id`]: record._id, from: record.status, verdict },
          `${kind} reconciled with the gateway`,
        );
    } catch (error) {
      result.failed += 1;
      deps.logger.warn({ [`${kind}Id`]: record._id, err: error }, `could not reconcile a ${kind} with the gateway`);
    }
  };
  for (const payment of payments) await run('payment', payment, reconcilePayment, deps.models.Payment);
  for (const refund of refunds) await run('refund', refund, reconcileRefund, deps.models.Refund);
  if (result.asked > 0) deps.logger.info(result, 'gateway reconciliation done');
  return result;
}

/** The gateway's answer, or undefined when it cannot answer now (it refused the key, the object is not there). */
async function ask<T>(call: () => Promise<T>): Promise<T | undefined> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof GatewayError) return undefined;
    throw error;
  }
}

async function reconcilePayment(deps: ReconcileDeps, payment: PaymentRecord): Promise<Verdict> {
  const target = { companyId: payment.companyId, officeId: payment.officeId };
  const access = await resolveGatewayAccess(deps.models, target, payment.gatewayAccount);
  if (!access.ok || !payment.stripePaymentIntentId) return 'unchanged';
  if (payment.status === 'needs_attention') {
    // Its account can be asked again: the charge worker does the asking (it looks at the saved intent first).
    return requeue(deps.models.Payment, payment, () =>
      ensureJob(deps.chargesQueue, chargeJobId(payment._id), () =>
        enqueueCharge(deps.chargesQueue, { paymentId: payment._id, requestId: payment.requestId }),
      ),
    );
  }
  const intentId = payment.stripePaymentIntentId;
  const intent = await ask(() => deps.gateway.retrievePaymentIntent(access.credentials, intentId));
  if (!intent) return 'unchanged';
  const decision = decideCharge(intent);
  if (decision.action !== 'record' || decision.outcome.status === payment.status) return 'unchanged';
  const applied = await recordPaymentOutcome(deps, payment, payment.status, decision.outcome, { actor: ACTOR });
  return applied ? 'settled' : 'unchanged';
}

async function reconcileRefund(deps: ReconcileDeps, refund: RefundRecord): Promise<Verdict> {
  const payment = await deps.models.Payment.findOne({ _id: refund.paymentId, companyId: refund.companyId }).lean();
  if (!payment?.stripePaymentIntentId) return 'unchanged';
  const target = { companyId: payment.companyId, officeId: payment.officeId };
  const access = await resolveGatewayAccess(deps.models, target, payment.gatewayAccount);
  if (!access.ok) return 'unchanged';
  if (refund.status === 'needs_attention') {
    // The refunds worker looks for the refund an earlier attempt made before it makes one.
    return requeue(deps.models.Refund, refund, () =>
      ensureJob(deps.refundsQueue, refundJobId(refund._id), () =>
        enqueueRefund(deps.refundsQueue, { refundId: refund._id, requestId: refund.requestId }),
      ),
    );
  }
  const found = { paymentIntentId: payment.stripePaymentIntentId, refundId: refund._id };
  const answer = await ask(() => deps.gateway.findRefund(access.credentials, found));
  if (!answer || answer.status === refund.status) return 'unchanged';
  const moved = await moveRefund(deps.models, refund._id, {
    status: answer.status,
    stripeRefundId: answer.id,
    ...(answer.failureReason ? { failureReason: answer.failureReason } : {}),
  });
  if (!moved.applied) return 'unchanged';
  await followRefund(moved.refund, deps, ACTOR);
  return 'settled';
}

/**
 * Gives a record that needed attention back to its worker: `queued` again (so the outbox sweep also finds it should
 * the enqueue fail), then a job.
 */
async function requeue(
  model: { updateOne(filter: object, update: object): PromiseLike<{ modifiedCount: number }> },
  record: { _id: string },
  ensure: () => Promise<boolean>,
): Promise<Verdict> {
  const moved = await model.updateOne(
    { _id: record._id, status: 'needs_attention' },
    { $set: { status: 'queued' }, $unset: { attention: 1 } },
  );
  if (moved.modifiedCount === 0) return 'unchanged';
  await ensure();
  return 'requeued';
}
