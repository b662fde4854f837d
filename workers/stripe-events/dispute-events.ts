import type { Job } from 'bullmq';
import { MAX_DECISIONS } from '../../domain/decision-rounds';
import { PAYMENT_INTENT_ID } from '../../domain/stripe-ids';
import { z } from 'zod';
import { transitionEventId } from '../../domain/audit-actions';
import {
  decideDisputeTransition,
  disputeOutcome,
  isDisputeClosed,
  isDisputeStatus,
  type DisputeEventType,
} from '../../domain/dispute-transitions';
import { disputeRevisionId } from '../../models/dispute-revision.model';
import { isDuplicateKeyError } from '../../models/errors';
import type { PaymentDispute, PaymentRecord } from '../../models/payment.model';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import { bindEventToRecord } from './binding';
import { paymentOutcome, STRIPE_EVENTS_ACTOR, type StripeEventDeps, type StripeEventHandler } from './handler';

/** The parts of a Stripe Dispute (`data.object`) that are read here: opaque ids, amounts and codes. */
const disputeObjectSchema = z.object({
  id: z.string().regex(/^(dp|du)_[A-Za-z0-9]{1,255}$/),
  // null for a charge made without a PaymentIntent: none of ours.
  payment_intent: z.string().regex(PAYMENT_INTENT_ID).nullish(),
  amount: z.number().int().nonnegative(),
  currency: z.string().regex(/^[a-z]{3}$/),
  reason: z.string().regex(/^[a-z0-9_]{1,64}$/),
  status: z.string(),
  created: z.number().int().positive(),
});

/**
 * `charge.dispute.created`, `.updated` and `.closed`: records the dispute on the
 * payment whose PaymentIntent it names, looked up only within the company whose
 * configuration verified the event. `domain/dispute-transitions.ts` decides;
 * the write is conditional on the dispute we decided on.
 */
export const applyDisputeEvent: StripeEventHandler = async ({ row, object, auditKey, job, deps }) => {
  const type = row.type as DisputeEventType;
  const parsed = disputeObjectSchema.safeParse(object);
  if (!parsed.success) return paymentOutcome('ignored', 'dispute_invalid');
  const dispute = parsed.data;
  const status = dispute.status;
  if (!isDisputeStatus(status)) return paymentOutcome('ignored', 'dispute_status_unknown');
  if (!dispute.payment_intent) return paymentOutcome('ignored', 'payment_not_found');
  const incoming = { stripeDisputeId: dispute.id, status, created: new Date(dispute.created * 1000) };
  const { Payment, DisputeRevision } = deps.models;
  /** The dispute write decided from `recorded` (conditional on it); the updated payment, or null when it moved on. */
  const write = (payment: PaymentRecord, recorded: PaymentDispute | undefined, next: PaymentDispute) =>
    Payment.findOneAndUpdate(
      {
        _id: payment._id,
        companyId: row.companyId,
        ...(recorded
          ? { 'dispute.stripeDisputeId': recorded.stripeDisputeId, 'dispute.status': recorded.status }
          : { dispute: { $exists: false } }),
      },
      { $set: { dispute: next } },
      { new: true },
    ).lean();

  for (let round = 0; round < MAX_DECISIONS; round += 1) {
    // Never another company's payment: the lookup is scoped to the verifying configuration's company.
    const payment = await Payment.findOne({
      companyId: row.companyId,
      stripePaymentIntentId: dispute.payment_intent,
    }).lean();
    if (!payment) return paymentOutcome('ignored', 'payment_not_found');
    // Our PaymentIntent, but the event must also come from the configuration serving the payment, in its key's mode.
    const binding = await bindEventToRecord(deps, row, payment, {
      kind: 'intent',
      eventObjectId: dispute.payment_intent,
      recordedObjectId: payment.stripePaymentIntentId,
    });
    if (!binding.bound) return paymentOutcome('ignored', binding.reason, payment);
    const recorded = payment.dispute;
    const revision = recorded ? (recorded.revision ?? 1) : 0;
    // The next write is claimed (by another event, or by this one before it stopped) and not made yet: make it, it is
    // the same write, then decide on what it left.
    const claimed = await DisputeRevision.findById(disputeRevisionId(payment._id, revision + 1)).lean();
    if (claimed) {
      await write(payment, recorded, claimed.dispute);
      continue;
    }

    const decision = decideDisputeTransition(recorded, type, incoming);
    if (!decision.apply) {
      // This event's own earlier attempt wrote the dispute, then stopped before it was audited and marked.
      if (recorded && (recorded.changedBy === auditKey || recorded.openedBy === auditKey)) {
        await auditDispute(payment, recorded, auditKey, job, deps);
        await creditLostDispute(payment, recorded, deps);
        return paymentOutcome('applied', appliedReason(recorded, auditKey), payment);
      }
      return paymentOutcome('ignored', decision.reason, payment);
    }

    const next: PaymentDispute = {
      stripeDisputeId: dispute.id,
      status: decision.to,
      amount: dispute.amount,
      currency: dispute.currency,
      reason: dispute.reason,
      openedAt: decision.opens || !recorded ? incoming.created : recorded.openedAt,
      ...(decision.closes ? { closedAt: row.created, outcome: disputeOutcome(decision.to) } : {}),
      openedBy: decision.opens || !recorded ? auditKey : recorded.openedBy,
      changedBy: auditKey,
      revision: revision + 1,
    };
    // One writer per revision: two events of this payment processed at once cannot both write.
    try {
      await DisputeRevision.insertMany(
        [
          {
            _id: disputeRevisionId(payment._id, next.revision!),
            paymentId: payment._id,
            revision: next.revision!,
            dispute: next,
            claimedAt: new Date(),
          },
        ],
        { lean: true },
      );
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
      continue;
    }
    const applied = await write(payment, recorded, next);
    if (applied) {
      await auditDispute(applied, next, auditKey, job, deps);
      await creditLostDispute(applied, next, deps);
      return paymentOutcome('applied', appliedReason(next, auditKey), applied);
    }
  }
  // Still contended after several rounds: let BullMQ retry later.
  throw new Error(`payment kept changing while applying stripe event ${row._id}`);
};

/** A lost dispute: the disputed amount went back to the payer, so it is on a credit note (keyed by the dispute). */
async function creditLostDispute(
  payment: PaymentRecord,
  dispute: PaymentDispute,
  deps: StripeEventDeps,
): Promise<void> {
  if (dispute.outcome !== 'lost') return;
  await deps.onMoneyReturned?.({
    companyId: payment.companyId,
    paymentId: payment._id,
    source: { type: 'dispute', id: dispute.stripeDisputeId },
    amount: dispute.amount,
    currency: dispute.currency,
    at: dispute.closedAt ?? new Date(),
  });
}

const appliedReason = (dispute: PaymentDispute, auditKey: string): string =>
  dispute.openedBy === auditKey ? 'dispute_opened' : `dispute_${dispute.status}`;

/** `payment.disputed` from the event that opened the dispute, `payment.dispute_closed` from the one that closed it. */
async function auditDispute(
  payment: PaymentRecord,
  dispute: PaymentDispute,
  auditKey: string,
  job: Job<StripeEventJob>,
  deps: StripeEventDeps,
): Promise<void> {
  const common = {
    companyId: payment.companyId,
    ...(payment.officeId ? { officeId: payment.officeId } : {}),
    actor: STRIPE_EVENTS_ACTOR,
    resource: { type: 'payment', id: payment._id },
    requestId: payment.requestId,
    ...(job.id ? { jobId: job.id } : {}),
  };
  if (dispute.openedBy === auditKey) {
    await deps.enqueueAudit({
      ...common,
      eventId: transitionEventId('payment.disputed', auditKey),
      action: 'payment.disputed',
      outcome: 'success',
      reason: dispute.reason,
      occurredAt: dispute.openedAt.toISOString(),
    });
  }
  if (dispute.changedBy === auditKey && isDisputeClosed(dispute.status)) {
    await deps.enqueueAudit({
      ...common,
      eventId: transitionEventId('payment.dispute_closed', auditKey),
      action: 'payment.dispute_closed',
      outcome: dispute.outcome === 'lost' ? 'failure' : 'success',
      reason: dispute.status,
      occurredAt: (dispute.closedAt ?? new Date()).toISOString(),
    });
  }
}
