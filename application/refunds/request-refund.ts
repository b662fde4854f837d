import type { AuditEventInput } from '../../domain/audit-event';
import { refundRequestedEvent } from '../../domain/refund-audit';
import { refundIdFor, refundRequestHash, type RefundRequest } from '../../domain/refund-request';
import type { Models } from '../../models';
import { isDuplicateKeyError } from '../../models/errors';
import type { PaymentRecord } from '../../models/payment.model';
import {
  holdRefund,
  LedgerBusyError,
  markHoldRecorded,
  refundableAmount,
  releaseHold,
} from '../../models/refund-ledger.model';
import type { RefundRecord } from '../../models/refund.model';
import type { RefundJob } from '../../queues/refunds.queue';

export interface RequestRefundDeps {
  models: Pick<Models, 'Refund' | 'RefundLedger'>;
  /**
   * Queues the refund's job together with its `refund.requested` audit event.
   * Both are idempotent (ids from the refund), so a retry or the outbox sweep
   * may repeat them. The refund is recorded by then, so the request is accepted
   * even when they cannot be queued: the sweep queues it, and the refunds worker
   * (`sendRefund`) emits `refund.requested`.
   */
  enqueueRefund: (job: RefundJob, audit: AuditEventInput) => Promise<void>;
}

export interface RefundRequestInput {
  /** The payment to refund, already authorized for the caller. */
  payment: Pick<PaymentRecord, '_id' | 'companyId' | 'officeId' | 'status' | 'amount' | 'currency'>;
  idempotencyKey: string;
  request: RefundRequest;
  requestedBy: RefundRecord['requestedBy'];
  requestId: string;
}

/**
 * - `accepted`: the refund is recorded (and queued, while it is `queued`); `replayed` when an earlier request with
 *   this Idempotency-Key and this body recorded it.
 * - `key_conflict`: the key was used for another refund request (or for a refund that ran its course and is gone).
 * - `not_refundable`: the payment did not succeed. `exceeds`: not that much is left to refund (`refundable` is).
 * - `busy`: too many refunds of this payment at once; a retry with the same key may pass.
 * Nothing was sent to the gateway in any case: the refunds worker does that.
 */
export type RefundRequestResult =
  | { outcome: 'accepted'; refund: RefundRecord; replayed: boolean }
  | { outcome: 'key_conflict' | 'not_refundable' | 'busy' }
  | { outcome: 'exceeds'; refundable: number };

/**
 * Requests a refund of a payment. The amount is reserved on the payment's
 * ledger with one conditional append before anything is written (so an
 * over-refund, however many requests race, leaves no trace), then the refund is
 * recorded, the hold marked recorded, and the refund queued with its audit event.
 */
export async function requestRefund(deps: RequestRefundDeps, input: RefundRequestInput): Promise<RefundRequestResult> {
  const { Refund, RefundLedger } = deps.models;
  const { payment, idempotencyKey, request } = input;
  const { companyId, _id: paymentId } = payment;
  const requestHash = refundRequestHash(paymentId, request);

  const accepted = async (refund: RefundRecord, replayed: boolean): Promise<RefundRequestResult> => {
    if (refund.status === 'queued') {
      await deps.enqueueRefund({ refundId: refund._id, requestId: refund.requestId }, refundRequestedEvent(refund));
    }
    return { outcome: 'accepted', refund, replayed };
  };

  const earlier = await Refund.findOne({ companyId, idempotencyKey }).lean();
  if (earlier) {
    if (earlier.requestHash !== requestHash) return { outcome: 'key_conflict' };
    return accepted(earlier, true);
  }

  if (payment.status !== 'succeeded') return { outcome: 'not_refundable' };
  // Reserve first: a refund that does not fit leaves no trace. The id is derived from key and request, so a
  // retry after a crash between this hold and the record below finds its own hold ('already_held').
  const refundId = refundIdFor(companyId, idempotencyKey, requestHash);
  let hold: Awaited<ReturnType<typeof holdRefund>>;
  try {
    hold = await holdRefund(RefundLedger, payment, { refundId, amount: request.amount, unrecorded: true });
  } catch (error) {
    if (error instanceof LedgerBusyError) return { outcome: 'busy' };
    throw error;
  }
  if (hold.result === 'exceeds')
    return { outcome: 'exceeds', refundable: refundableAmount(payment.amount, hold.totals) };
  // A refund with this id already ran its course, and its record is gone: the key cannot be used again.
  if (hold.result === 'finished') return { outcome: 'key_conflict' };

  let refund: RefundRecord;
  let replayed = false;
  try {
    refund = (
      await Refund.create({
        _id: refundId,
        companyId,
        ...(payment.officeId ? { officeId: payment.officeId } : {}),
        paymentId,
        amount: request.amount,
        currency: payment.currency,
        reason: request.reason,
        status: 'queued',
        requestedBy: input.requestedBy,
        requestId: input.requestId,
        idempotencyKey,
        requestHash,
        attempts: 0,
      })
    ).toObject();
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const existing = await Refund.findOne({ companyId, idempotencyKey }).lean();
    if (!existing) throw error;
    if (existing.requestHash !== requestHash) {
      // A concurrent request with this key and another body won: this request's hold will never have a refund.
      await releaseHold(RefundLedger, { paymentId, companyId }, refundId);
      return { outcome: 'key_conflict' };
    }
    refund = existing;
    replayed = true;
  }
  await markHoldRecorded(RefundLedger, refundId);
  return accepted(refund, replayed);
}
