import { ulid } from '../../platform/ids';
import { paymentRequestHash, type PaymentRequest } from '../../domain/payment-request';
import type { Models } from '../../models';
import type { Collection } from 'mongodb';
import { isDuplicateKeyError } from '../../models/errors';
import type { PaymentRecord, SealedRequestContext } from '../../models/payment.model';
import type { CachedCompany } from '../../models/settings-cache';

export interface RequestPaymentDeps {
  models: Pick<Models, 'Payment'>;
  /**
   * Queues the payment's charge job, and only it: the charge worker sends `payment.requested` first in its outcome's
   * audit batch, built from the stored payment (`sealedContext` included). Idempotent (the job id is the payment's), so a
   * retry or the outbox sweep may repeat it. The payment is recorded by then, so the request is accepted even when it
   * cannot be queued: the sweep queues the charge, whose run sends `payment.requested`.
   */
  enqueuePayment: (payment: PaymentRecord) => Promise<void>;
  /**
   * Seals where the request came from (ip, user agent) under the company's data key, for the payment record: the
   * `payment.requested` event the charge worker sends carries it. Called once the company is known to exist.
   */
  sealContext: () => Promise<SealedRequestContext>;
  intake: {
    /**
     * The company as the api's settings cache has it (models/settings-cache.ts): from memory while Redis' token for it
     * is unchanged, so a shredding (which sets the token first) is seen by the next request.
     */
    company: (companyId: string) => Promise<Pick<CachedCompany, 'shreddedAt' | 'paymentInfoShredded'> | null>;
    /**
     * The payments collection on the client without decryption (models/connection.ts `plainCollection`): the payment
     * is stored in the clear (its sealed context is ciphertext already).
     */
    payments: Collection<PaymentRecord>;
  };
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
  const { Payment } = deps.models;
  const company = await deps.intake.company(input.companyId);
  if (!company) return { outcome: 'company_not_found' };
  if (company.shreddedAt || company.paymentInfoShredded) return { outcome: 'company_shredded' };

  const requestHash = paymentRequestHash(input.request);
  // Sealed before the insert: the record is all the charge worker has to build the request's audit event from.
  const sealedContext = await deps.sealContext();
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
      sealedContext,
      attempts: 0,
      createdAt: now,
      updatedAt: now,
    };
    await deps.intake.payments.insertOne(payment);
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
