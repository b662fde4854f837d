import type { Attention } from '../../domain/gateway-account';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PAYMENT_ID, paymentRequestSchema } from '../../domain/payment-request';
import type { Models } from '../../models';
import type { PaymentRecord } from '../../models/payment.model';
import { refundableAmount, refundTotals, type RefundTotals } from '../../models/refund-ledger.model';
import { PAYMENT_STATUSES } from '../../domain/payment-status';
import { enqueueCharge } from '../../queues/charges.queue';
import type { Queues } from '../../queues';
import type { FieldEncryption } from '../../models/encryption';
import type { AccessGuard } from '../access-guard';
import { sealRequestContext } from '../audit-context';
import { enqueueRecordedIntent } from '../enqueue';
import { ApiError } from '../errors';
import { authorizedPayment, companyShredded, paymentParams } from '../payment-access';
import { requestPayment, type RequestPaymentDeps } from '../../application/payments/request-payment';
import { parse, requireIdempotencyKey, scopeIdSchema } from '../validation';

export interface PaymentRouteDeps {
  models: Pick<Models, 'Company' | 'Payment' | 'RefundLedger'>;
  queues: Pick<Queues, 'charges' | 'audit'>;
  maxAmount: number;
  authorize: AccessGuard['authorize'];
  authorizeList: AccessGuard['authorizeList'];
  encryption: Pick<FieldEncryption, 'encrypt'>;
  intake: RequestPaymentDeps['intake'];
}

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();
export const listQuery = z
  .object({
    officeId: scopeIdSchema.optional(),
    status: z.enum(PAYMENT_STATUSES).optional(),
    limit: z.coerce.number().int().min(1).max(100).default(25),
    /** The last id of the previous page; ids are ULIDs, so they sort by creation time. */
    after: z.string().regex(PAYMENT_ID).optional(),
  })
  .strict();

/** Why a payment or refund is `needs_attention`: the reason code, a sentence, and since when. */
export function presentAttention(attention: Attention) {
  return { code: attention.code, message: attention.message, since: attention.since.toISOString() };
}

/** What the upstream app sees of a payment: status, amounts, the failure reason, what 3-D Secure needs, any dispute. */
function presentPayment(payment: PaymentRecord, refunds?: RefundTotals) {
  return {
    id: payment._id,
    status: payment.status,
    amount: payment.amount,
    currency: payment.currency,
    ...(payment.officeId ? { officeId: payment.officeId } : {}),
    ...(payment.serviceCategory ? { serviceCategory: payment.serviceCategory } : {}),
    ...(payment.failure
      ? {
          failure: {
            code: payment.failure.code,
            message: payment.failure.message,
            ...(payment.failure.declineCode ? { declineCode: payment.failure.declineCode } : {}),
          },
        }
      : {}),
    ...(payment.attention ? { attention: presentAttention(payment.attention) } : {}),
    ...(payment.status === 'requires_action' && payment.action
      ? { nextAction: { type: payment.action.nextActionType, clientSecret: String(payment.action.clientSecret) } }
      : {}),
    ...(payment.dispute
      ? {
          dispute: {
            id: payment.dispute.stripeDisputeId,
            status: payment.dispute.status,
            amount: payment.dispute.amount,
            currency: payment.dispute.currency,
            reason: payment.dispute.reason,
            openedAt: payment.dispute.openedAt.toISOString(),
            ...(payment.dispute.closedAt ? { closedAt: payment.dispute.closedAt.toISOString() } : {}),
            ...(payment.dispute.outcome ? { outcome: payment.dispute.outcome } : {}),
          },
        }
      : {}),
    ...(refunds ? presentRefunds(payment, refunds) : {}),
    createdAt: payment.createdAt.toISOString(),
    updatedAt: payment.updatedAt.toISOString(),
  };
}

/**
 * Refund money of a succeeded payment (on GET of one payment): confirmed refunds, what refunds in flight or done
 * hold, what is left, and (once Stripe reported it) Stripe's own total, which includes refunds made outside this API.
 */
function presentRefunds(payment: PaymentRecord, refunds: RefundTotals) {
  return {
    refundedAmount: refunds.refunded,
    refundReservedAmount: refunds.reserved,
    refundableAmount: refundableAmount(payment.amount, refunds),
    ...(refunds.gatewayRefunded !== undefined ? { gatewayRefundedAmount: refunds.gatewayRefunded } : {}),
  };
}

export function registerPaymentRoutes(app: FastifyInstance, deps: PaymentRouteDeps): void {
  const { Payment, RefundLedger } = deps.models;
  const bodySchema = paymentRequestSchema(deps.maxAmount);

  // The charge job only: its worker sends `payment.requested` (from the payment, with the sealed context it stores)
  // first in the outcome's audit job.
  const enqueuePayment = (payment: PaymentRecord, request: FastifyRequest) =>
    enqueueRecordedIntent(request, deps, {
      what: 'payment',
      id: payment._id,
      enqueueJob: () => enqueueCharge(deps.queues.charges, { paymentId: payment._id, requestId: payment.requestId }),
    });

  app.post('/v1/companies/:companyId/payments', { bodyLimit: 16 * 1024 }, async (request, reply) => {
    const { companyId } = parse(companyParams, request.params);
    const idempotencyKey = requireIdempotencyKey(request);
    const body = parse(bodySchema, request.body);
    await deps.authorize(request, 'payments:create', { companyId, officeId: body.officeId });

    const principal = request.principal!;
    const result = await requestPayment(
      {
        models: deps.models,
        intake: deps.intake,
        enqueuePayment: (payment) => enqueuePayment(payment, request),
        sealContext: () => sealRequestContext(request, companyId, deps.encryption),
      },
      {
        companyId,
        idempotencyKey,
        request: body,
        requestedBy: { type: principal.subjectType, id: principal.subject },
        requestId: request.id,
      },
    );
    switch (result.outcome) {
      case 'company_not_found':
        throw new ApiError(404, 'company_not_found', 'no such company');
      case 'company_shredded':
        throw companyShredded();
      case 'key_conflict':
        throw new ApiError(
          422,
          'idempotency_key_conflict',
          'this Idempotency-Key was already used with a different request body; use a new key for a new payment',
        );
    }
    if (result.replayed) void reply.header('idempotent-replayed', 'true');
    return reply.status(202).send({ id: result.payment._id, status: result.payment.status });
  });

  app.get('/v1/companies/:companyId/payments/:paymentId', async (request) => {
    const payment = await authorizedPayment(deps, request, parse(paymentParams, request.params), 'payments:read');
    const refunds = payment.status === 'succeeded' ? await refundTotals(RefundLedger, payment._id) : undefined;
    return presentPayment(payment, refunds);
  });

  app.get('/v1/companies/:companyId/payments', async (request) => {
    const { companyId } = parse(companyParams, request.params);
    const query = parse(listQuery, request.query);
    const scope = await deps.authorizeList(request, 'payments:read', { companyId, officeId: query.officeId });
    const filter: Record<string, unknown> = { companyId };
    if (scope.officeIds) filter.officeId = { $in: scope.officeIds };
    if (query.status) filter.status = query.status;
    if (query.after) filter._id = { $lt: query.after };
    const page = await Payment.find(filter)
      .sort({ _id: -1 })
      .limit(query.limit + 1)
      .lean();
    const items = page.slice(0, query.limit).map((payment) => presentPayment(payment));
    return { items, nextCursor: page.length > query.limit ? items[items.length - 1]?.id : null };
  });
}
