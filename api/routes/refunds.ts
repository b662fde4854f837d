import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { requestRefund } from '../../application/refunds/request-refund';
import { REFUND_ID, refundRequestSchema } from '../../domain/refund-request';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import type { RefundRecord } from '../../models/refund.model';
import type { Queues } from '../../queues';
import { enqueueRefund } from '../../queues/refunds.queue';
import type { AccessGuard } from '../access-guard';
import { enqueueRecordedIntent } from '../enqueue';
import { ApiError } from '../errors';
import { authorizedPayment, paymentParams, rejectIfShredded } from '../payment-access';
import { presentAttention } from './payments';
import { parse, requireIdempotencyKey } from '../validation';

export interface RefundRouteDeps {
  models: Pick<Models, 'Company' | 'Payment' | 'Refund' | 'RefundLedger'>;
  queues: Pick<Queues, 'refunds' | 'audit'>;
  maxAmount: number;
  authorize: AccessGuard['authorize'];
  encryption: Pick<FieldEncryption, 'encrypt'>;
}

export const refundParams = paymentParams.extend({ refundId: z.string().regex(REFUND_ID) }).strict();

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
    ...(refund.attention ? { attention: presentAttention(refund.attention) } : {}),
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
 * Refunds of a payment. A request is parsed and authorized here; the
 * `requestRefund` use case reserves the amount, records the refund and queues
 * it; the answer is a 202 (or the reason it was refused). Stripe is called by
 * the refunds worker only.
 */
export function registerRefundRoutes(app: FastifyInstance, deps: RefundRouteDeps): void {
  const { Refund } = deps.models;
  const bodySchema = refundRequestSchema(deps.maxAmount);

  app.post('/v1/companies/:companyId/payments/:paymentId/refunds', { bodyLimit: 4 * 1024 }, async (request, reply) => {
    const params = parse(paymentParams, request.params);
    const idempotencyKey = requireIdempotencyKey(request);
    const body = parse(bodySchema, request.body);
    const payment = await authorizedPayment(deps, request, params, 'refunds:create');
    await rejectIfShredded(deps.models, params.companyId);
    const principal = request.principal!;

    const result = await requestRefund(
      {
        models: deps.models,
        // The caller's context is sealed into the audit event. The refund is recorded by now: a queue that cannot
        // take them is logged, not a 503 (the outbox sweep queues it, and the worker emits refund.requested).
        enqueueRefund: (job, audit) =>
          enqueueRecordedIntent(request, deps, {
            what: 'refund',
            id: job.refundId,
            audit,
            enqueueJob: () => enqueueRefund(deps.queues.refunds, job),
          }),
      },
      {
        payment,
        idempotencyKey,
        request: body,
        requestedBy: { type: principal.subjectType, id: principal.subject },
        requestId: request.id,
      },
    );
    switch (result.outcome) {
      case 'key_conflict':
        throw keyConflict();
      case 'not_refundable':
        throw notRefundable();
      case 'busy':
        throw new ApiError(
          503,
          'refunds_busy',
          'too many refunds of this payment at once; retry with the same Idempotency-Key',
        );
      case 'exceeds':
        throw new ApiError(
          422,
          'refund_exceeds_captured',
          `the refund exceeds what is left to refund on this payment (${result.refundable} of ${payment.amount}); nothing was sent to the gateway`,
        );
      case 'accepted': {
        const { refund } = result;
        if (result.replayed) void reply.header('idempotent-replayed', 'true');
        return reply
          .status(202)
          .header('location', refundLocation(refund))
          .send({ id: refund._id, status: refund.status });
      }
    }
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
