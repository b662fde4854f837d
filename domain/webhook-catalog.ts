import { z } from 'zod';
import type { AuditAction } from './audit-actions';

/**
 * The events pushed to upstream apps' webhook endpoints (docs/outgoing-webhooks.md). Each is derived from an audit
 * event (the audit trail records every state change in the same write as the change), so the catalog is a map from
 * audit actions to event types. Names are never renamed once shipped.
 */
export const WEBHOOK_EVENT_TYPES = [
  'payment.succeeded',
  'payment.failed',
  'payment.requires_action',
  'payment.needs_attention',
  'refund.succeeded',
  'refund.failed',
  'dispute.created',
  'dispute.closed',
  'subscription.created',
  'subscription.updated',
  'subscription.past_due',
  'subscription.unpaid',
  'subscription.canceled',
  'subscription.renewed',
  'invoice.finalized',
  'invoice.paid',
  'invoice.voided',
  'invoice.uncollectible',
  'credit_note.issued',
  'payment_method.saved',
] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** `enabledEvents` of an endpoint: event types, or `*` for all of them. */
export const enabledEventsSchema = z
  .array(z.enum([...WEBHOOK_EVENT_TYPES, '*']))
  .min(1)
  .max(WEBHOOK_EVENT_TYPES.length + 1)
  .transform((types) => [...new Set(types)]);

export function endpointWants(enabledEvents: readonly string[], type: WebhookEventType): boolean {
  return enabledEvents.includes('*') || enabledEvents.includes(type);
}

const DIRECT: Partial<Record<AuditAction, WebhookEventType>> = {
  'payment.succeeded': 'payment.succeeded',
  'payment.failed': 'payment.failed',
  'payment.requires_action': 'payment.requires_action',
  'payment.needs_attention': 'payment.needs_attention',
  'refund.succeeded': 'refund.succeeded',
  'refund.failed': 'refund.failed',
  'payment.disputed': 'dispute.created',
  'payment.dispute_closed': 'dispute.closed',
  'subscription.created': 'subscription.created',
  'subscription.updated': 'subscription.updated',
  'subscription.period_paid': 'subscription.renewed',
  'invoice.paid': 'invoice.paid',
  'invoice.voided': 'invoice.voided',
  'credit_note.finalized': 'credit_note.issued',
  'payment_method.saved': 'payment_method.saved',
};

/** Subscription status moves (`<from>_to_<to>` reason codes) with an event type of their own; others are `updated`. */
const SUBSCRIPTION_STATUS_EVENTS: Partial<Record<string, WebhookEventType>> = {
  past_due: 'subscription.past_due',
  unpaid: 'subscription.unpaid',
  canceled: 'subscription.canceled',
};

/**
 * The event type an audit event gives, if any: only successful or failed state changes, never denials or reads.
 * `invoice.finalized` of an invoice that dunning gave up on is `invoice.uncollectible` (decided by the caller, who
 * reads the invoice: see `invoiceEventType`).
 */
export function webhookEventTypeOf(event: {
  action: AuditAction;
  outcome: string;
  reason?: string;
}): WebhookEventType | undefined {
  if (event.outcome === 'denied') return undefined;
  if (event.action === 'invoice.finalized') return 'invoice.finalized';
  if (event.action === 'subscription.status_changed') {
    const to = event.reason?.split('_to_')[1];
    return (to ? SUBSCRIPTION_STATUS_EVENTS[to] : undefined) ?? 'subscription.updated';
  }
  return DIRECT[event.action];
}

export function invoiceEventType(status: string): WebhookEventType {
  return status === 'uncollectible' ? 'invoice.uncollectible' : 'invoice.finalized';
}

// ---- payloads: ids, statuses, amounts, codes and times only. Never a payer's name, address, email, note or
// anything from a payer profile (PHI): the payload is read from the resource's own fields, listed here.

const id = z.string();
const time = z.string().meta({ format: 'date-time' });
const amount = z.number().int().nonnegative().meta({ description: "In the currency's minor unit." });
const currency = z.string().meta({ description: 'ISO 4217, lower case.' });

export const paymentEventData = z.strictObject({
  object: z.literal('payment'),
  id,
  officeId: id.optional(),
  status: z.string(),
  amount,
  currency,
  subscriptionId: id.optional(),
  failureCode: z.string().optional().meta({ description: "The gateway's failure code, for a failed payment." }),
  declineCode: z.string().optional(),
  attentionReason: z.string().optional(),
  createdAt: time,
  updatedAt: time,
});

export const refundEventData = z.strictObject({
  object: z.literal('refund'),
  id,
  officeId: id.optional(),
  paymentId: id,
  status: z.string(),
  amount,
  currency,
  reason: z.string(),
  failureCode: z.string().optional(),
  createdAt: time,
  updatedAt: time,
});

export const disputeEventData = z.strictObject({
  object: z.literal('dispute'),
  paymentId: id,
  officeId: id.optional(),
  status: z.string(),
  amount,
  currency,
  reason: z.string().meta({ description: "The card network's reason code (e.g. `fraudulent`)." }),
  outcome: z.string().optional(),
  openedAt: time,
  closedAt: time.optional(),
});

export const subscriptionEventData = z.strictObject({
  object: z.literal('subscription'),
  id,
  officeId: id.optional(),
  planId: id,
  status: z.string(),
  amount,
  currency,
  interval: z.strictObject({ unit: z.enum(['day', 'week', 'month', 'year']), count: z.number().int().positive() }),
  currentPeriod: z.strictObject({ start: time, end: time }),
  cancelAtPeriodEnd: z.boolean(),
  createdAt: time,
  updatedAt: time,
});

export const invoiceEventData = z.strictObject({
  object: z.enum(['invoice', 'credit_note']),
  id,
  officeId: id.optional(),
  number: z.string().optional(),
  status: z.string(),
  total: amount,
  amountPaid: amount,
  amountDue: amount,
  currency,
  subscriptionId: id.optional(),
  paymentId: id.optional(),
  refundId: id.optional(),
  creditsInvoiceId: id.optional(),
  issuedAt: time,
});

export const paymentMethodEventData = z.strictObject({
  object: z.literal('payment_method'),
  id,
  officeId: id.optional(),
  status: z.string(),
  card: z.strictObject({ brand: z.string(), last4: z.string() }).optional(),
  createdAt: time,
});

export const WEBHOOK_EVENT_DATA = {
  'payment.succeeded': paymentEventData,
  'payment.failed': paymentEventData,
  'payment.requires_action': paymentEventData,
  'payment.needs_attention': paymentEventData,
  'refund.succeeded': refundEventData,
  'refund.failed': refundEventData,
  'dispute.created': disputeEventData,
  'dispute.closed': disputeEventData,
  'subscription.created': subscriptionEventData,
  'subscription.updated': subscriptionEventData,
  'subscription.past_due': subscriptionEventData,
  'subscription.unpaid': subscriptionEventData,
  'subscription.canceled': subscriptionEventData,
  'subscription.renewed': subscriptionEventData,
  'invoice.finalized': invoiceEventData,
  'invoice.paid': invoiceEventData,
  'invoice.voided': invoiceEventData,
  'invoice.uncollectible': invoiceEventData,
  'credit_note.issued': invoiceEventData,
  'payment_method.saved': paymentMethodEventData,
} as const satisfies Record<WebhookEventType, z.ZodType>;

export type WebhookEventData = z.infer<(typeof WEBHOOK_EVENT_DATA)[WebhookEventType]>;

/** The body of a delivery (Standard Webhooks' payload shape); `webhook-id` is the event id. */
export function webhookPayloadSchema<T extends WebhookEventType>(type: T) {
  return z.strictObject({
    type: z.literal(type),
    timestamp: time.meta({ description: 'When the change happened.' }),
    data: WEBHOOK_EVENT_DATA[type],
  });
}

export interface WebhookPayload {
  type: WebhookEventType;
  timestamp: string;
  data: WebhookEventData;
}
