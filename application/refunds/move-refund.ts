import type { AuditEventInput } from '../../domain/audit-event';
import { MAX_DECISIONS } from '../../domain/decision-rounds';
import { refundOutcomeEvent, toReasonCode } from '../../domain/refund-audit';
import type { GatewayRefundStatus, RefundStatus } from '../../domain/refund-status';
import { decideRefundTransition } from '../../domain/refund-transitions';
import type { Models } from '../../models';
import { applyRefundToLedger } from '../../models/refund-ledger.model';
import type { RefundFailure, RefundRecord } from '../../models/refund.model';

export type RefundActor = AuditEventInput['actor'];

/** What the gateway (its answer to the worker, or a webhook) says about one of our refunds. */
export interface ReportedRefund {
  status: GatewayRefundStatus;
  stripeRefundId?: string;
  failureReason?: string;
}

export type RefundMove =
  | { applied: true; from: RefundStatus; refund: RefundRecord }
  | { applied: false; reason: string; refund?: RefundRecord };

/** What the gateway says about a refund, as an update of our record. */
export function gatewayRefundUpdate(
  to: GatewayRefundStatus,
  reported: Omit<ReportedRefund, 'status'>,
): { $set: Record<string, unknown>; $unset: Record<string, 1> } {
  const set: Record<string, unknown> = { status: to };
  const unset: Record<string, 1> = { lastError: 1, attention: 1 };
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

/**
 * Moves a refund to what Stripe reports, if `domain/refund-transitions.ts`
 * allows it from the stored status, with a write conditional on that status.
 * The ledger moves first, so a refund never shows succeeded while its payment
 * does not count it yet; the ledger's own rules (a confirmation needs a hold, a
 * release takes a confirmation back) keep it right if the write then loses a race.
 * `ignore` may refuse a refund (another company's, a Stripe refund not ours, another configuration's) with a reason.
 * Entered by the refunds worker (the gateway's answer) and by the stripe-events worker (webhooks).
 */
export async function moveRefund(
  models: Pick<Models, 'Refund' | 'RefundLedger'>,
  refundId: string,
  reported: ReportedRefund,
  options: { changedBy?: string; ignore?: (refund: RefundRecord) => Promise<string | undefined> } = {},
): Promise<RefundMove> {
  for (let round = 0; round < MAX_DECISIONS; round += 1) {
    const refund = await models.Refund.findById(refundId).lean();
    if (!refund) return { applied: false, reason: 'refund_not_found' };
    const ignored = await options.ignore?.(refund);
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

export interface FollowRefundDeps {
  models: Pick<Models, 'RefundLedger'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** Told of a succeeded refund (again after a crash or a redelivery: it must be idempotent): its credit note. */
  onRefundSucceeded?: (refund: RefundRecord) => Promise<void>;
  /** Told of a failed refund (idempotent): one that had succeeded has its credit note voided. */
  onRefundFailed?: (refund: RefundRecord) => Promise<void>;
}

/**
 * After a refund moved (or was found moved): the payment's ledger follows the
 * refund's stored status, and a final status is audited. Both are idempotent,
 * so whoever moved it (worker, webhook, a retry of either) may call this.
 */
export async function followRefund(
  refund: RefundRecord,
  deps: FollowRefundDeps,
  actor: RefundActor,
  jobId?: string,
): Promise<void> {
  await applyRefundToLedger(deps.models.RefundLedger, refund);
  const event = refundOutcomeEvent(refund, actor, jobId);
  if (event) await deps.enqueueAudit(event);
  if (refund.status === 'succeeded') await deps.onRefundSucceeded?.(refund);
  if (refund.status === 'failed') await deps.onRefundFailed?.(refund);
}
