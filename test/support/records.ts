import { periodId } from '../../models/subscription.model';
import { ulid } from 'ulid';
import type { Database, Models } from '../../models';
import type { Queues } from '../../queues';
import { waitFor } from './harness';
import { savedPaymentMethodId } from '../../models/saved-payment-method.model';
import type { PaymentRecord } from '../../models/payment.model';
import type { RefundRecord } from '../../models/refund.model';

/**
 * A payment written straight to the database, in the state a test needs (as if
 * the api and the charges worker had brought it there). Opaque test values only.
 */
export async function insertPayment(
  models: Pick<Models, 'Payment'>,
  fields: Pick<PaymentRecord, 'companyId' | 'status'> & Partial<PaymentRecord>,
): Promise<PaymentRecord> {
  const payment = await models.Payment.create({
    _id: `pay_${ulid()}`,
    idempotencyKey: `test-${ulid()}`,
    requestHash: 'a'.repeat(64),
    amount: 1200,
    currency: 'usd',
    customer: 'cus_TestPatientRef01',
    paymentMethod: 'pm_card_visa',
    requestedBy: { type: 'service', id: 'svc-portal' },
    requestId: `req_${ulid()}`,
    attempts: 1,
    ...fields,
  });
  return payment.toObject();
}

/** A refund written straight to the database, in the state a test needs. Opaque test values only. */
export async function insertRefund(
  models: Pick<Models, 'Refund'>,
  fields: Pick<RefundRecord, '_id' | 'companyId' | 'paymentId' | 'status'> & Partial<RefundRecord>,
): Promise<RefundRecord> {
  const refund = await models.Refund.create({
    amount: 500,
    currency: 'usd',
    reason: 'requested_by_customer',
    requestedBy: { type: 'service', id: 'svc-portal' },
    requestId: `req_${ulid()}`,
    idempotencyKey: `test-${ulid()}`,
    requestHash: 'b'.repeat(64),
    attempts: 0,
    ...fields,
  });
  return refund.toObject();
}

/** The items in a random order (Fisher–Yates). */
export function shuffle<T>(items: T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/** A payer's saved card, as `setup_intent.succeeded` stores it (its Stripe ids encrypted with the company's key). */
export async function insertSavedCard(
  db: Pick<Database, 'models' | 'encryption'>,
  fields: { companyId: string; customerRef: string; paymentMethod: string; savedBy: string; officeId?: string },
): Promise<string> {
  const { companyId, customerRef } = fields;
  const id = savedPaymentMethodId(companyId, `seti_${ulid()}`);
  await db.models.SavedPaymentMethod.create({
    _id: id,
    companyId,
    ...(fields.officeId ? { officeId: fields.officeId } : {}),
    customerRef,
    stripeCustomerId: await db.encryption.encrypt(companyId, `cus_${customerRef.replace(/[^A-Za-z0-9]/g, '')}`),
    stripePaymentMethodId: await db.encryption.encrypt(companyId, fields.paymentMethod),
    usage: 'off_session',
    status: 'active',
    brand: 'visa',
    last4: '4242',
    expMonth: 12,
    expYear: 2030,
    savedBy: fields.savedBy,
  });
  return id;
}

/**
 * An outgoing webhook event of one payment (`payment.succeeded`, as the audit worker derives it) and one delivery of
 * it to each endpoint named, written straight to the database. Returns the event's id and the delivery ids, by
 * endpoint, in the order given, and the event's body as delivered.
 */
export async function insertOutgoingDeliveries(
  models: Pick<Models, 'OutgoingEvent' | 'WebhookDelivery'>,
  fields: {
    companyId: string;
    endpointIds: string[];
    status?: 'pending' | 'failed';
    amount?: number;
    /** The event still marked for its fan-out (its emitter stopped before it was done). */
    fanOutPending?: true;
  },
): Promise<{ eventId: string; body: string; deliveryIds: string[] }> {
  const { companyId } = fields;
  const eventId = `msg_${ulid()}`;
  const body = JSON.stringify({
    type: 'payment.succeeded',
    timestamp: new Date().toISOString(),
    data: {
      object: 'payment',
      id: `pay_${ulid()}`,
      status: 'succeeded',
      amount: fields.amount ?? 2500,
      currency: 'usd',
    },
  });
  await models.OutgoingEvent.create({
    _id: eventId,
    auditEventId: `evt_${ulid()}`,
    companyId,
    type: 'payment.succeeded',
    occurredAt: new Date(),
    body,
    createdAt: new Date(),
    ...(fields.fanOutPending ? { fanOutPending: true } : {}),
  });
  const deliveryIds: string[] = [];
  for (const endpointId of fields.endpointIds) {
    const deliveryId = `dlv_${ulid()}`;
    await models.WebhookDelivery.create({
      _id: deliveryId,
      companyId,
      endpointId,
      eventId,
      eventType: 'payment.succeeded',
      status: fields.status ?? 'pending',
      attempts: [],
      redeliveries: 0,
    });
    deliveryIds.push(deliveryId);
  }
  return { eventId, body, deliveryIds };
}

/**
 * An active monthly subscription of 42.00 USD whose next period started a minute ago: due, with a saved card
 * (`pm_card_visa`). Its id and the due period's id.
 */
export async function insertDueSubscription(
  db: Pick<Database, 'models' | 'encryption'>,
  fields: { companyId: string; customerRef: string },
): Promise<{ subscriptionId: string; periodKey: string }> {
  const { companyId, customerRef } = fields;
  const paymentMethodId = await insertSavedCard(db, {
    companyId,
    customerRef,
    paymentMethod: 'pm_card_visa',
    savedBy: `test-${customerRef}`,
  });
  const day = 24 * 60 * 60 * 1000;
  const dueAt = new Date(Date.now() - 60_000);
  const id = `sub_${ulid()}`;
  await db.models.Subscription.create({
    _id: id,
    companyId,
    planId: `plan_${ulid()}`,
    customerRef,
    paymentMethodId,
    status: 'active',
    amount: 4_200,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    cycle: { anchor: dueAt, timeZone: 'UTC' },
    currentPeriod: { index: 0, start: dueAt, end: new Date(dueAt.getTime() + 30 * day) },
    nextBillingAt: dueAt,
    cancelAtPeriodEnd: false,
    idempotencyKey: `due-${ulid()}`,
    requestHash: 'x',
    requestedBy: { type: 'service', id: 'test' },
    requestId: 'req_due_subscription',
  });
  return { subscriptionId: id, periodKey: periodId(id, dueAt) };
}

/** What a renewal leaves on its company's trail, in the order it happens. */
export const RENEWAL_ACTIONS = [
  'subscription.attempt_started',
  'payment.requested',
  'payment.succeeded',
  'subscription.period_paid',
  'invoice.finalized',
  'invoice.rendered',
];

/**
 * The company's trail events about `resourceIds` (a subscription, its payment, its invoice) in chain order, once the
 * audit queue is idle and every one of `actions` is there.
 */
export async function trailOf(
  ctx: { db: Pick<Database, 'models'>; queues: Pick<Queues, 'audit'> },
  companyId: string,
  resourceIds: string[],
  actions: readonly string[] = RENEWAL_ACTIONS,
) {
  const { stored } = await waitFor(
    async () => {
      const counts = await ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const stored = await ctx.db.models.AuditEvent.find({ companyId, 'resource.id': { $in: resourceIds } })
        .sort({ sequence: 1 })
        .lean();
      return { idle: Object.values(counts).every((n) => n === 0), stored };
    },
    ({ idle, stored }) => idle && actions.every((action) => stored.some((event) => event.action === action)),
    { what: `the audit events of ${resourceIds.join(', ')}`, timeoutMs: 30_000 },
  );
  return stored;
}
