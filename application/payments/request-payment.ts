import { ulid } from '../../platform/ids';
import { paymentRequestHash, type PaymentRequest } from '../../domain/payment-request';
import type { Models } from '../../models';
import { isDuplicateKeyError } from '../../models/errors';
import type { PaymentRecord } from '../../models/payment.model';

export interface RequestPaymentDeps {
  models: Pick<Models, 'Company' | 'Payment'>;
  /**
   * Queues the payment's charge job together with its `payment.requested` audit event. Both are idempotent (ids from
   * the payment), so a retry or the outbox sweep may repeat them. The payment is recorded by then, so the request is
   * accepted even when they cannot be queued: the sweep queues it, and the charge worker emits `payment.requested`.
   */
  enqueuePayment: (payment: PaymentRecord) => Promise<void>;
}

export interface PaymentRequestInput {
  companyId: string;
  idempotencyKey: string;
  request: PaymentRequest;
  requestedBy: PaymentRecord['requestedBy'];
  requestId: string;
}

/**
 * - `accepted`: the payment is recorded (and queued while it is `queued`); `replayed` when an earlier request with this
 *   Idempotency-Key and this body recorded it.
 * - `key_conflict`: the key was used for another payment request.
 * - `company_not_found`, `company_shredded`: nothing can be charged for that company.
 * Nothing is sent to the gateway in any case: the charges worker does that.
 */
export type PaymentRequestResult =
  | { outcome: 'accepted'; payment: PaymentRecord; replayed: boolean }
  | { outcome: 'key_conflict' | 'company_not_found' | 'company_shredded' };

/**
 * Requests a payment: one insert under the unique (company, Idempotency-Key) index records the intent — of two racing
 * requests with one key, one inserts and the other finds its payment — then the charge is queued.
 */
export async function requestPayment(
  deps: RequestPaymentDeps,
  input: PaymentRequestInput,
): Promise<PaymentRequestResult> {
  const { Company, Payment } = deps.models;
  const company = await Company.findById(input.companyId, { shreddedAt: 1 }).lean();
  if (!company) return { outcome: 'company_not_found' };
  if (company.shreddedAt) return { outcome: 'company_shredded' };

  const requestHash = paymentRequestHash(input.request);
  let payment: PaymentRecord;
  let replayed = false;
  try {
    const now = new Date();
    payment = {
      _id: `pay_${ulid()}`,
      companyId: input.companyId,
      idempotencyKey: input.idempotencyKey,
      requestHash,
      ...input.request,
      status: 'queued',
      requestedBy: input.requestedBy,
      requestId: input.requestId,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
    };
    // The request was validated in full (domain/payment-request.ts): a plain insert, no document machinery.
    await Payment.insertMany([payment], { lean: true });
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const existing = await Payment.findOne({ companyId: input.companyId, idempotencyKey: input.idempotencyKey }).lean();
    if (!existing) throw error;
    if (existing.requestHash !== requestHash) return { outcome: 'key_conflict' };
    payment = existing;
    replayed = true;
  }
  if (payment.status === 'queued') await deps.enqueuePayment(payment);
  return { outcome: 'accepted', payment, replayed };
}
