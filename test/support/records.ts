import { ulid } from 'ulid';
import type { Database, Models } from '../../models';
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
