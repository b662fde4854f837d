import type { AuditEvent } from '../../domain/audit-event';
import { invoiceEventType, type WebhookEventData, type WebhookEventType } from '../../domain/webhook-catalog';
import type { Models } from '../../models';

type DataModels = Pick<Models, 'Payment' | 'Refund' | 'Subscription' | 'Invoice' | 'SavedPaymentMethod'>;

const iso = (value: Date | undefined) => (value ? new Date(value).toISOString() : undefined);
const office = (officeId: string | undefined) => (officeId ? { officeId } : {});
function defined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/**
 * The payload of an event: read from the resource the audit event names, field by field (ids, statuses, amounts,
 * codes, times). Nothing of a payer profile, no customer reference, no free text: the payload schemas
 * (domain/webhook-catalog.ts) are strict and list every field. Undefined when the resource is gone (crypto-shredded
 * or never stored): no event then. `type` may be refined (an invoice finalized as uncollectible).
 */
export async function readEventData(
  models: DataModels,
  type: WebhookEventType,
  audit: Pick<AuditEvent, 'resource' | 'companyId'>,
): Promise<{ type: WebhookEventType; data: WebhookEventData } | undefined> {
  const { id } = audit.resource;
  const mine = { _id: id, companyId: audit.companyId };
  if (type.startsWith('payment.') && type !== 'payment_method.saved') {
    const p = await models.Payment.findOne(mine).lean();
    if (!p) return undefined;
    return {
      type,
      data: defined({
        object: 'payment' as const,
        id: p._id,
        ...office(p.officeId),
        status: p.status,
        amount: p.amount,
        currency: p.currency,
        subscriptionId: p.subscription?.subscriptionId,
        failureCode: p.failure?.code,
        declineCode: p.failure?.declineCode,
        attentionReason: p.attention?.code,
        createdAt: iso(p.createdAt)!,
        updatedAt: iso(p.updatedAt)!,
      }),
    };
  }
  if (type.startsWith('dispute.')) {
    const p = await models.Payment.findOne(mine).lean();
    if (!p?.dispute) return undefined;
    const d = p.dispute;
    return {
      type,
      data: defined({
        object: 'dispute' as const,
        paymentId: p._id,
        ...office(p.officeId),
        status: d.status,
        amount: d.amount,
        currency: d.currency,
        reason: d.reason,
        outcome: d.outcome,
        openedAt: iso(d.openedAt)!,
        closedAt: iso(d.closedAt),
      }),
    };
  }
  if (type.startsWith('refund.')) {
    const r = await models.Refund.findOne(mine).lean();
    if (!r) return undefined;
    return {
      type,
      data: defined({
        object: 'refund' as const,
        id: r._id,
        ...office(r.officeId),
        paymentId: r.paymentId,
        status: r.status,
        amount: r.amount,
        currency: r.currency,
        reason: r.reason,
        failureCode: r.failure?.code,
        createdAt: iso(r.createdAt)!,
        updatedAt: iso(r.updatedAt)!,
      }),
    };
  }
  if (type.startsWith('subscription.')) {
    const s = await models.Subscription.findOne(mine).lean();
    if (!s) return undefined;
    return {
      type,
      data: defined({
        object: 'subscription' as const,
        id: s._id,
        ...office(s.officeId),
        planId: s.planId,
        status: s.status,
        amount: s.amount,
        currency: s.currency,
        interval: { unit: s.interval.unit, count: s.interval.count },
        currentPeriod: { start: iso(s.currentPeriod.start)!, end: iso(s.currentPeriod.end)! },
        cancelAtPeriodEnd: s.cancelAtPeriodEnd,
        createdAt: iso(s.createdAt)!,
        updatedAt: iso(s.updatedAt)!,
      }),
    };
  }
  if (type.startsWith('invoice.') || type === 'credit_note.issued') {
    const i = await models.Invoice.findOne(mine).lean();
    if (!i) return undefined;
    return {
      type: type === 'invoice.finalized' ? invoiceEventType(i.status) : type,
      data: defined({
        object: i.kind,
        id: i._id,
        ...office(i.officeId),
        number: i.number,
        status: i.status,
        total: i.total,
        amountPaid: i.amountPaid,
        amountDue: i.amountDue,
        currency: i.currency,
        subscriptionId: i.subscriptionId,
        paymentId: i.paymentId,
        refundId: i.refundId,
        creditsInvoiceId: i.creditsInvoiceId,
        issuedAt: iso(i.issuedAt)!,
      }),
    };
  }
  if (type === 'payment_method.saved') {
    const m = await models.SavedPaymentMethod.findOne(mine).lean();
    if (!m) return undefined;
    return {
      type,
      data: defined({
        object: 'payment_method' as const,
        id: m._id,
        ...office(m.officeId),
        status: m.status,
        card: m.card ? { brand: m.card.brand, last4: m.card.last4 } : undefined,
        createdAt: iso(m.createdAt)!,
      }),
    };
  }
  return undefined;
}
