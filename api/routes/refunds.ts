import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { refundRequestedEvent } from '../../domain/refund-audit';
import { REFUND_ID, refundIdFor, refundRequestHash, refundRequestSchema } from '../../domain/refund-request';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import { isDuplicateKeyError } from '../../models/errors';
import {
  holdRefund,
  LedgerBusyError,
  markHoldRecorded,
  refundableAmount,
  releaseHold,
} from '../../models/refund-ledger.model';
import type { RefundRecord } from '../../models/refund.model';
import type { Queues } from '../../queues';
import { enqueueRefund } from '../../queues/refunds.queue';
import type { AccessGuard } from '../access-guard';
import { enqueueRecordedIntent } from '../enqueue';
import { ApiError } from '../errors';
import { authorizedPayment, paymentParams, rejectIfShredded } from '../payment-access';
import { parse, requireIdempotencyKey } from '../validation';

export interface RefundRouteDeps {
  models: Pick<Models, 'Company' | 'Payment' | 'Refund' | 'RefundLedger'>;
  queues: Pick<Queues, 'refunds' | 'audit'>;
  maxAmount: number;
  authorize: AccessGuard['authorize'];
  encryption: Pick<FieldEncryption, 'encrypt'>;
}

const refundParams = paymentParams.extend({ refundId: z.string().regex(REFUND_ID) }).strict();

/** What the upstream app sees of a refund. */
function presentRefund(refund: RefundRecord) {
  return {
    id: refund._id,
    paymentId: refund.paymentId,
    status: refund.status,
    amount: refund.amount,
    currency: refund.currency,
    reason: refund.reason,
    ...(refund.officeId ? { officeId: refund.officeId } : {}),
    ...(refund.failure ? { failure: { code: refund.failure.code, message: refund.failure.message } } : {}),
    createdAt: refund.createdAt.toISOString(),
    updatedAt: refund.updatedAt.toISOString(),
    ...(refund.completedAt ? { completedAt: refund.completedAt.toISOString() } : {}),
  };
}

const refundLocation = (refund: Pick<RefundRecord, '_id' | 'companyId' | 'paymentId'>): string =>
  `/v1/companies/${refund.companyId}/payments/${refund.paymentId}/refunds/${refund._id}`;

const notRefundable = () =>
  new ApiError(
    422,
    'payment_not_refundable',
    'only a succeeded payment can be refunded; nothing was sent to the gateway',
  );

const keyConflict = () =>
  new ApiError(
    422,
    'idempotency_key_conflict',
    'this Idempotency-Key was already used with a different refund request; use a new key for a new refund',
  );

/**
 * Refunds of a payment. The request reserves the amount on the payment with one
 * conditional update before anything is written (so an over-refund, however
 * many requests race, is a 422 that leaves no trace), then records the refund,
 * enqueues it and answers 202. Stripe is called by the refunds worker only.
 */
export function registerRefundRoutes(app: FastifyInstance, deps: RefundRouteDeps): void {
  const { Refund, RefundLedger } = deps.models;
  const bodySchema = refundRequestSchema(deps.maxAmount);

  const enqueue = (refund: RefundRecord, request: FastifyRequest) =>
    enqueueRecordedIntent(request, deps, {
      what: 'refund',
      audit: refundRequestedEvent(refund),
      enqueueJob: () => enqueueRefund(deps.queues.refunds, { refundId: refund._id, requestId: refund.requestId }),
    });

  app.post('/v1/companies/:companyId/payments/:paymentId/refunds', { bodyLimit: 4 * 1024 }, async (request, reply) => {
    const params = parse(paymentParams, request.params);
    const { companyId, paymentId } = params;
    const idempotencyKey = requireIdempotencyKey(request);
    const body = parse(bodySchema, request.body);
    const payment = await authorizedPayment(deps, request, params, 'refunds:create');
    await rejectIfShredded(deps.models, companyId);

    const requestHash = refundRequestHash(paymentId, body);
    const answer = async (refund: RefundRecord, replayed: boolean) => {
      if (refund.status === 'queued') await enqueue(refund, request);
      if (replayed) void reply.header('idempotent-replayed', 'true');
      return reply
        .status(202)
        .header('location', refundLocation(refund))
        .send({ id: refund._id, status: refund.status });
    };

    const earlier = await Refund.findOne({ companyId, idempotencyKey }).lean();
    if (earlier) {
      if (earlier.requestHash !== requestHash) throw keyConflict();
      return answer(earlier, true);
    }

    if (payment.status !== 'succeeded') throw notRefundable();
    // Reserve first: a refund that does not fit leaves no trace. The id is derived from key and request, so a
    // retry after a crash between this hold and the record below finds its own hold ('already_held').
    const refundId = refundIdFor(companyId, idempotencyKey, requestHash);
    const target = { paymentId, companyId };
    const hold = await holdRefund(RefundLedger, payment, { refundId, amount: body.amount, unrecorded: true }).catch(
      (error: unknown) => {
        if (!(error instanceof LedgerBusyError)) throw error;
        throw new ApiError(
          503,
          'refunds_busy',
          'too many refunds of this payment at once; retry with the same Idempotency-Key',
        );
      },
    );
    if (hold.result === 'exceeds') {
      const left = refundableAmount(payment.amount, hold.totals);
      throw new ApiError(
        422,
        'refund_exceeds_captured',
        `the refund exceeds what is left to refund on this payment (${left} of ${payment.amount}); nothing was sent to the gateway`,
      );
    }
    // A refund with this id already ran its course, and its record is gone: the key cannot be used again.
    if (hold.result === 'finished') throw keyConflict();

    const principal = request.principal!;
    let refund: RefundRecord;
    let replayed = false;
    try {
      refund = (
        await Refund.create({
          _id: refundId,
          companyId,
          ...(payment.officeId ? { officeId: payment.officeId } : {}),
          paymentId,
          amount: body.amount,
          currency: payment.currency,
          reason: body.reason,
          status: 'queued',
          requestedBy: { type: principal.subjectType, id: principal.subject },
          requestId: request.id,
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
        await releaseHold(RefundLedger, target, refundId);
        throw keyConflict();
      }
      refund = existing;
      replayed = true;
    }
    await markHoldRecorded(RefundLedger, refundId);
    return answer(refund, replayed);
  });

  app.get('/v1/companies/:companyId/payments/:paymentId/refunds', async (request) => {
    const params = parse(paymentParams, request.params);
    await authorizedPayment(deps, request, params, 'payments:read');
    // A payment has few refunds (each takes part of its amount): one page, oldest first.
    const refunds = await Refund.find({ companyId: params.companyId, paymentId: params.paymentId })
      .sort({ createdAt: 1, _id: 1 })
      .limit(100)
      .lean();
    return { items: refunds.map(presentRefund) };
  });

  app.get('/v1/companies/:companyId/payments/:paymentId/refunds/:refundId', async (request) => {
    const params = parse(refundParams, request.params);
    await authorizedPayment(deps, request, params, 'payments:read');
    const refund = await Refund.findOne({
      _id: params.refundId,
      companyId: params.companyId,
      paymentId: params.paymentId,
    }).lean();
    if (!refund) throw new ApiError(404, 'refund_not_found', 'no such refund');
    return presentRefund(refund);
  });
}
