import { z } from 'zod';
import { PAYMENT_INTENT_ID } from '../../domain/stripe-ids';
import { followRefund, moveRefund } from '../../application/refunds/move-refund';
import { transitionEventId } from '../../domain/audit-actions';
import { PAYMENT_ID } from '../../domain/payment-request';
import { REFUND_ID } from '../../domain/refund-request';
import { isGatewayRefundStatus } from '../../domain/refund-status';
import type { PaymentRecord } from '../../models/payment.model';
import { recordGatewayReport, refundTotals } from '../../models/refund-ledger.model';
import type { RefundRecord } from '../../models/refund.model';
import type { BindingRefusal } from '../../domain/webhook-binding';
import { bindEventToRecord } from './binding';
import { paymentOutcome, STRIPE_EVENTS_ACTOR, type EventOutcome, type StripeEventHandler } from './handler';

type HandlerContext = Parameters<StripeEventHandler>[0];

/** The parts of a Stripe Refund (`data.object`) read here: ids, amount, status and codes. */
const refundObjectSchema = z.object({
  id: z.string().regex(/^[a-z]{2,5}_[A-Za-z0-9]{1,255}$/),
  status: z.string().nullish(),
  amount: z.number().int().nonnegative().nullish(),
  currency: z
    .string()
    .regex(/^[a-z]{3}$/)
    .nullish(),
  payment_intent: z.string().regex(PAYMENT_INTENT_ID).nullish(),
  failure_reason: z.string().nullish(),
  metadata: z.object({ refund_id: z.string().optional() }).passthrough().nullish(),
});
type RefundObject = z.infer<typeof refundObjectSchema>;

/** The parts of a Stripe Charge read here. `refunds` is only present on older API versions. */
const chargeObjectSchema = z.object({
  payment_intent: z.string().regex(PAYMENT_INTENT_ID).nullish(),
  amount_refunded: z.number().int().nonnegative(),
  metadata: z.object({ payment_id: z.string().optional() }).passthrough().nullish(),
  refunds: z.object({ data: z.array(z.unknown()) }).nullish(),
});

const onRefund = (status: EventOutcome['status'], reason: string, refund?: RefundRecord): EventOutcome => ({
  status,
  reason,
  ...(refund
    ? {
        resource: { type: 'refund', id: refund._id },
        paymentId: refund.paymentId,
        ...(refund.officeId ? { officeId: refund.officeId } : {}),
      }
    : {}),
});

/**
 * Moves our refund to what Stripe reports (the `moveRefund` use case, which the
 * refunds worker also enters with the gateway's answer); then the payment's
 * ledger and the audit trail follow the refund's stored status (`followRefund`).
 */
async function applyReportedRefund(refundObject: RefundObject, context: HandlerContext): Promise<EventOutcome> {
  const { row, auditKey, job, deps } = context;
  const refundId = refundObject.metadata?.refund_id;
  let refused: BindingRefusal | undefined;
  // Made outside this API (e.g. in the Stripe dashboard): charge.refunded records its amount on the payment, and a
  // succeeded one gets its credit note here.
  if (!refundId || !REFUND_ID.test(refundId)) return creditRefundNotOurs(refundObject, context);
  const status = refundObject.status;
  if (!isGatewayRefundStatus(status)) return onRefund('ignored', 'refund_status_unknown');

  const moved = await moveRefund(
    deps.models,
    refundId,
    {
      status,
      stripeRefundId: refundObject.id,
      ...(refundObject.failure_reason ? { failureReason: refundObject.failure_reason } : {}),
    },
    {
      changedBy: auditKey,
      ignore: async (refund) => {
        // The config that verified the event names the company; another company's refund is never touched.
        if (refund.companyId !== row.companyId) return 'company_mismatch';
        // Only the Stripe refund we created (its id recorded from Stripe's answer), from the configuration serving
        // the refund's payment, in its key's mode: metadata is whatever the sender wrote.
        const binding = await bindEventToRecord(deps, row, refund, {
          kind: 'refund',
          eventObjectId: refundObject.id,
          recordedObjectId: refund.stripeRefundId,
        });
        refused = binding.bound ? undefined : binding.reason;
        return refused;
      },
    },
  );
  const { refund } = moved;
  if (!refund) return onRefund('ignored', moved.applied ? 'refund_not_found' : moved.reason);
  if (!moved.applied && moved.reason === 'company_mismatch') return onRefund('ignored', moved.reason);
  if (!moved.applied && moved.reason === refused) return onRefund('ignored', moved.reason, refund);
  // Ledger and audit are idempotent: this also catches up after an earlier attempt stopped right after the move.
  await followRefund(refund, deps, STRIPE_EVENTS_ACTOR, job.id);
  if (moved.applied || refund.changedBy === auditKey) return onRefund('applied', `refund_${refund.status}`, refund);
  return onRefund('ignored', moved.reason, refund);
}

/**
 * A succeeded refund made outside this API on one of our payments: the money went back, so it is on a credit note
 * (keyed by Stripe's refund id: `refund.created`, `refund.updated` and a `charge.refunded` listing it make one).
 * Only for the PaymentIntent we created, from the configuration serving the payment (as for our own refunds).
 */
async function creditRefundNotOurs(refundObject: RefundObject, context: HandlerContext): Promise<EventOutcome> {
  const { row, deps } = context;
  if (refundObject.status !== 'succeeded' || !refundObject.payment_intent || !refundObject.amount) {
    return onRefund('ignored', 'refund_not_ours');
  }
  const payment = await deps.models.Payment.findOne({
    companyId: row.companyId,
    stripePaymentIntentId: refundObject.payment_intent,
  }).lean();
  if (!payment) return onRefund('ignored', 'refund_not_ours');
  const binding = await bindEventToRecord(deps, row, payment, {
    kind: 'intent',
    eventObjectId: refundObject.payment_intent,
    recordedObjectId: payment.stripePaymentIntentId,
  });
  if (!binding.bound) return paymentOutcome('ignored', binding.reason, payment);
  await deps.onMoneyReturned?.({
    companyId: payment.companyId,
    paymentId: payment._id,
    source: { type: 'gateway_refund', id: refundObject.id },
    amount: refundObject.amount,
    currency: refundObject.currency ?? payment.currency,
    at: row.created,
  });
  return paymentOutcome('applied', 'refund_outside_api_credited', payment);
}

/** `refund.created`, `refund.updated`, `refund.failed` and `charge.refund.updated`: a Refund object. */
export const applyRefundEvent: StripeEventHandler = async (context) => {
  const parsed = refundObjectSchema.safeParse(context.object);
  if (!parsed.success) return onRefund('ignored', 'refund_invalid');
  return applyReportedRefund(parsed.data, context);
};

/**
 * `charge.refunded`: Stripe's total refunded on the payment's charge, refunds
 * made outside this API (the dashboard) included. Recorded on the payment so
 * its refund figures stay truthful and no refund of ours can take the total
 * past the payment's amount, and audited. Refunds of ours listed on the charge
 * (older API versions list them) are applied as by `refund.updated`.
 */
export const applyChargeRefunded: StripeEventHandler = async (context) => {
  const { row, auditKey, job, deps } = context;
  const parsed = chargeObjectSchema.safeParse(context.object);
  if (!parsed.success) return paymentOutcome('ignored', 'charge_invalid');
  const charge = parsed.data;
  const { Payment } = deps.models;

  const named = charge.metadata?.payment_id;
  let payment: PaymentRecord | null = null;
  if (named && PAYMENT_ID.test(named)) {
    payment = await Payment.findById(named).lean();
    if (payment && payment.companyId !== row.companyId) return paymentOutcome('ignored', 'company_mismatch');
  } else if (charge.payment_intent) {
    // Never another company's payment: the lookup is scoped to the verifying configuration's company.
    payment = await Payment.findOne({ companyId: row.companyId, stripePaymentIntentId: charge.payment_intent }).lean();
  }
  if (!payment) return paymentOutcome('ignored', 'payment_not_found');
  // Only the charge of the PaymentIntent we created, from the configuration serving the payment, in its key's mode.
  const binding = await bindEventToRecord(deps, row, payment, {
    kind: 'intent',
    eventObjectId: charge.payment_intent ?? undefined,
    recordedObjectId: payment.stripePaymentIntentId,
  });
  if (!binding.bound) return paymentOutcome('ignored', binding.reason, payment);

  for (const listed of charge.refunds?.data ?? []) {
    const refund = refundObjectSchema.safeParse(listed);
    if (refund.success) await applyReportedRefund(refund.data, context);
  }

  const refunded = charge.amount_refunded;
  const recorded = await recordGatewayReport(
    deps.models.RefundLedger,
    { paymentId: payment._id, companyId: payment.companyId },
    { refunded, reportedAt: row.created, eventKey: auditKey },
  );
  if (!recorded.written) return paymentOutcome('ignored', recorded.reason, payment);
  if (recorded.previous !== refunded) {
    const ours = (await refundTotals(deps.models.RefundLedger, payment._id)).reserved;
    await deps.enqueueAudit({
      eventId: transitionEventId('payment.refunded_amount_reported', auditKey),
      companyId: payment.companyId,
      ...(payment.officeId ? { officeId: payment.officeId } : {}),
      action: 'payment.refunded_amount_reported',
      outcome: 'success',
      actor: STRIPE_EVENTS_ACTOR,
      resource: { type: 'payment', id: payment._id },
      // More refunded at Stripe than our refunds hold: someone refunded outside this API.
      reason: refunded > ours ? 'exceeds_our_refunds' : 'matches_our_refunds',
      changes: [
        {
          field: 'gatewayRefundedAmount',
          before: recorded.previous === undefined ? null : String(recorded.previous),
          after: String(refunded),
        },
      ],
      requestId: payment.requestId,
      ...(job.id ? { jobId: job.id } : {}),
      occurredAt: row.created.toISOString(),
    });
  }
  return paymentOutcome('applied', 'refunded_amount_recorded', payment);
};

/** Event type → handler, for the stripe-events worker's table. */
export const REFUND_EVENT_HANDLERS: Readonly<Record<string, StripeEventHandler>> = {
  'charge.refunded': applyChargeRefunded,
  'refund.created': applyRefundEvent,
  'refund.updated': applyRefundEvent,
  'refund.failed': applyRefundEvent,
  'charge.refund.updated': applyRefundEvent,
};
