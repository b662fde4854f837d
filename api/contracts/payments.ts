import { z } from 'zod';
import { DEFAULT_PAYMENT_MAX_AMOUNT } from '../../platform/config';
import { DISPUTE_STATUSES } from '../../domain/dispute-transitions';
import { PAYMENT_ID, paymentRequestSchema } from '../../domain/payment-request';
import { PAYMENT_STATUSES } from '../../domain/payment-status';
import { REFUND_ID, refundRequestSchema } from '../../domain/refund-request';
import { REFUND_REASONS, REFUND_STATUSES } from '../../domain/refund-status';
import { SERVICE_CATEGORIES } from '../../domain/service-categories';
import { paymentParams } from '../payment-access';
import {
  companyParams as methodCompanyParams,
  listQuery as methodListQuery,
  setupIntentBody,
} from '../routes/payment-methods';
import { companyParams, listQuery } from '../routes/payments';
import { refundParams } from '../routes/refunds';
import { currencyCode, failure, minorAmount, type OperationSpec, timestamp, withExamples } from '../openapi/spec';
import { PAYMENT_EXAMPLE, REQUEST_EXAMPLES } from './examples';

/**
 * The routes build their body schemas from PAYMENT_MAX_AMOUNT (`config.payments.maxAmount`); the document shows them
 * with that setting's default, so a change of the default changes the document (and `npm run openapi:check` says so).
 * A deployment that sets another bound answers with it.
 */
const DOCUMENTED_MAX_AMOUNT = DEFAULT_PAYMENT_MAX_AMOUNT;

const paymentId = z.string().regex(PAYMENT_ID);
const refundId = z.string().regex(REFUND_ID);

/** Why a payment or refund is `needs_attention` (presentAttention). */
const attention = z.strictObject({ code: z.string(), message: z.string(), since: timestamp });

/** A payment as a list shows it (presentPayment without refund totals). */
const paymentView = z.strictObject({
  id: paymentId,
  status: z.enum(PAYMENT_STATUSES),
  amount: minorAmount,
  currency: currencyCode,
  officeId: z.string().optional(),
  serviceCategory: z.enum(SERVICE_CATEGORIES).optional(),
  failure: z
    .strictObject({ code: z.string(), message: z.string(), declineCode: z.string().optional() })
    .optional()
    .meta({ description: 'Why it failed: our reason code and, for a decline, the bank’s decline code.' }),
  attention: attention.optional().meta({ description: 'Why it is `needs_attention`.' }),
  nextAction: z
    .strictObject({ type: z.string(), clientSecret: z.string() })
    .optional()
    .meta({ description: 'On `requires_action`: what the payer’s browser needs to finish 3-D Secure with Stripe.js.' }),
  dispute: z
    .strictObject({
      id: z.string(),
      status: z.enum(DISPUTE_STATUSES),
      amount: minorAmount,
      currency: currencyCode,
      reason: z.string(),
      openedAt: timestamp,
      closedAt: timestamp.optional(),
      outcome: z.enum(['won', 'lost']).optional(),
    })
    .optional()
    .meta({ description: 'The chargeback (or inquiry) on this payment.' }),
  createdAt: timestamp,
  updatedAt: timestamp,
});

/** One payment (presentPayment): a succeeded payment also carries its refund totals (presentRefunds). */
const paymentDetail = paymentView.extend({
  refundedAmount: minorAmount.optional().meta({ description: 'Confirmed refunds (succeeded payments only).' }),
  refundReservedAmount: minorAmount
    .optional()
    .meta({ description: 'What refunds in flight or done hold (succeeded payments only).' }),
  refundableAmount: minorAmount.optional().meta({ description: 'What is left to refund (succeeded payments only).' }),
  gatewayRefundedAmount: minorAmount
    .optional()
    .meta({ description: "Stripe's own refunded total, once it reported it; includes refunds made outside this api." }),
});

/** A refund (presentRefund). */
const refundView = z.strictObject({
  id: refundId,
  paymentId,
  status: z.enum(REFUND_STATUSES),
  amount: minorAmount,
  currency: currencyCode,
  reason: z.enum(REFUND_REASONS),
  officeId: z.string().optional(),
  failure: z.strictObject({ code: z.string(), message: z.string() }).optional(),
  attention: attention.optional().meta({ description: 'Why it is `needs_attention`.' }),
  createdAt: timestamp,
  updatedAt: timestamp,
  completedAt: timestamp.optional(),
});

/** A saved card (presentMethod): brand, last four digits and expiry, never a Stripe id or the number. */
const savedMethodView = z.strictObject({
  id: z.string(),
  customerRef: z.string(),
  officeId: z.string().optional(),
  brand: z.string().optional(),
  last4: z
    .string()
    .regex(/^[0-9]{4}$/)
    .optional(),
  expMonth: z.number().int().min(1).max(12).optional(),
  expYear: z.number().int().optional(),
  createdAt: timestamp,
});

const paymentNotFound = failure('No such payment in this company.', 'payment_not_found');
/** A payment holds an encrypted field (the 3-D Secure client secret): a crypto-shredded company's cannot be read. */
const shredded = failure("The company's data was crypto-shredded and cannot be read.", 'data_shredded');

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'post',
    route: '/v1/companies/:companyId/payments',
    operationId: 'createPayment',
    summary: 'Request a charge',
    description:
      'Records the payment and queues it for the charge worker; the answer is 202 with its id, then poll it (or listen for its webhook). A retry with the same `Idempotency-Key` and body answers the same payment (header `idempotent-replayed: true`).',
    tag: 'Payments',
    permission: 'payments:create',
    params: companyParams,
    body: withExamples(paymentRequestSchema(DOCUMENTED_MAX_AMOUNT), ...REQUEST_EXAMPLES.createPayment),
    idempotencyKey: 'required',
    responses: {
      202: {
        description: 'Accepted (or, on a retry, the payment the key already made, in its current status).',
        schema: withExamples(z.strictObject({ id: paymentId, status: z.enum(PAYMENT_STATUSES) }), {
          id: PAYMENT_EXAMPLE.id,
          status: 'queued',
        }),
      },
      400: failure('No usable `Idempotency-Key`.', 'idempotency_key_required'),
      404: failure('No such company.', 'company_not_found'),
      410: failure("The company's data was crypto-shredded.", 'company_shredded'),
      422: failure('The `Idempotency-Key` was already used with another body.', 'idempotency_key_conflict'),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payments/:paymentId',
    operationId: 'getPayment',
    summary: 'Read a payment',
    tag: 'Payments',
    permission: 'payments:read',
    params: paymentParams,
    responses: {
      200: {
        description: 'The payment; a succeeded one with its refund totals.',
        schema: withExamples(paymentDetail, PAYMENT_EXAMPLE, {
          ...PAYMENT_EXAMPLE,
          status: 'succeeded',
          refundedAmount: 0,
          refundReservedAmount: 0,
          refundableAmount: 4500,
        }),
      },
      404: paymentNotFound,
      410: shredded,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payments',
    operationId: 'listPayments',
    summary: "List the company's payments",
    description: 'Newest first; an office-scoped token sees its offices’ payments only.',
    tag: 'Payments',
    permission: 'payments:read',
    params: companyParams,
    query: listQuery,
    responses: {
      200: {
        description: 'A page of payments; `nextCursor` is the id to pass as `after` (null on the last page).',
        schema: z.strictObject({ items: z.array(paymentView), nextCursor: paymentId.nullable() }),
      },
      410: shredded,
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/payments/:paymentId/refunds',
    operationId: 'createRefund',
    summary: 'Refund (part of) a succeeded payment',
    description:
      'Reserves the amount on the payment, records the refund and queues it for the refunds worker; the answer is 202 with its id and a `Location` header. A retry with the same `Idempotency-Key` and body answers the same refund (header `idempotent-replayed: true`).',
    tag: 'Refunds',
    permission: 'refunds:create',
    params: paymentParams,
    body: withExamples(refundRequestSchema(DOCUMENTED_MAX_AMOUNT), ...REQUEST_EXAMPLES.createRefund),
    idempotencyKey: 'required',
    responses: {
      202: {
        description: 'Accepted (or, on a retry, the refund the key already made, in its current status).',
        headers: {
          location: { description: 'The refund to poll.', required: true, schema: { type: 'string' } },
        },
        schema: withExamples(z.strictObject({ id: refundId, status: z.enum(REFUND_STATUSES) }), {
          id: 'ref_01JEXAMP1E0000000000000000',
          status: 'queued',
        }),
      },
      400: failure('No usable `Idempotency-Key`.', 'idempotency_key_required'),
      404: paymentNotFound,
      410: failure("The company's data was crypto-shredded.", 'company_shredded', 'data_shredded'),
      422: failure(
        'The key was used with another body, the payment has not succeeded, or the amount exceeds what is left to refund; nothing was sent to the gateway.',
        'idempotency_key_conflict',
        'payment_not_refundable',
        'refund_exceeds_captured',
      ),
      503: failure('Too many refunds of this payment at once; retry with the same `Idempotency-Key`.', 'refunds_busy'),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payments/:paymentId/refunds',
    operationId: 'listRefunds',
    summary: "List a payment's refunds",
    description: 'Oldest first, in one page (up to 100).',
    tag: 'Refunds',
    permission: 'payments:read',
    params: paymentParams,
    responses: {
      200: { description: "The payment's refunds.", schema: z.strictObject({ items: z.array(refundView) }) },
      404: paymentNotFound,
      410: shredded,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payments/:paymentId/refunds/:refundId',
    operationId: 'getRefund',
    summary: 'Read a refund',
    tag: 'Refunds',
    permission: 'payments:read',
    params: refundParams,
    responses: {
      200: { description: 'The refund.', schema: refundView },
      404: failure('No such payment, or no such refund of it.', 'payment_not_found', 'refund_not_found'),
      410: shredded,
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/payment-methods/setup-intents',
    operationId: 'createSetupIntent',
    summary: "Start saving a payer's card (a Stripe SetupIntent)",
    description:
      "The payer's browser confirms the `clientSecret` with Stripe.js: the card number goes to Stripe, never through this api. The `Idempotency-Key` is optional here (a SetupIntent moves no money).",
    tag: 'Payment methods',
    permission: 'payments:create',
    params: methodCompanyParams,
    body: withExamples(setupIntentBody, ...REQUEST_EXAMPLES.createSetupIntent),
    idempotencyKey: 'optional',
    responses: {
      201: {
        description: 'The SetupIntent, created (or, on a retry with the same key, the one it created).',
        schema: z.strictObject({ setupIntentId: z.string(), clientSecret: z.string(), customerRef: z.string() }),
      },
      400: failure('The `Idempotency-Key` sent is not 8–255 printable characters.', 'idempotency_key_invalid'),
      404: failure('No such company.', 'company_not_found'),
      409: failure(
        'No usable gateway account for the company or office: none configured, incomplete, not attested, or refused by Stripe.',
        'payment_config_missing',
        'office_payment_config_missing',
        'office_account_incomplete',
        'gateway_not_attested',
        'payment_config_invalid',
      ),
      410: failure("The company's data was crypto-shredded.", 'company_shredded'),
      422: failure('The `Idempotency-Key` was already used for another payer or office.', 'idempotency_key_conflict'),
      502: failure('Stripe refused the request.', 'gateway_refused'),
      503: failure(
        'Stripe did not answer, or the audit event could not be queued; try again.',
        'gateway_unavailable',
        'audit_unavailable',
      ),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payment-methods',
    operationId: 'listPaymentMethods',
    summary: "List a payer's saved cards",
    description: 'Newest first, up to 100, masked: brand, last four digits and expiry only.',
    tag: 'Payment methods',
    permission: 'payments:read',
    params: methodCompanyParams,
    query: methodListQuery,
    responses: {
      200: {
        description: "The payer's active saved cards.",
        schema: z.strictObject({ items: z.array(savedMethodView) }),
      },
    },
  },
];
