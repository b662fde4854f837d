import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { createSetupIntent } from '../../application/payment-methods/create-setup-intent';
import type { AuditEventInput } from '../../domain/audit-event';
import type { PaymentGateway } from '../../domain/payment-gateway';
import { IDEMPOTENCY_KEY_PATTERN, OFFICE_ID } from '../../domain/payment-request';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import { isCustomerRef, type SavedPaymentMethodRecord } from '../../models/saved-payment-method.model';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import type { Queues } from '../../queues';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import type { AccessGuard } from '../access-guard';
import { sealRequestContext } from '../audit-context';
import { ApiError } from '../errors';
import { companyShredded } from '../payment-access';
import { parse, scopeIdSchema } from '../validation';

export interface PaymentMethodRouteDeps {
  models: Pick<Models, 'Company' | 'Office' | 'StripeCustomer' | 'SetupIntent' | 'SavedPaymentMethod'>;
  queues: Pick<Queues, 'audit'>;
  gateway: Pick<PaymentGateway, 'createCustomer' | 'createSetupIntent'>;
  authorize: AccessGuard['authorize'];
  authorizeList: AccessGuard['authorizeList'];
  encryption: Pick<FieldEncryption, 'encrypt'>;
}

const CUSTOMER_REF_MESSAGE =
  'must be your opaque payer reference (letters, digits, _ and -, up to 64): never a name, email or card number';
/** Our payer reference: it reaches Stripe (Customer and SetupIntent metadata), so only an opaque id passes. */
const customerRefSchema = z.string().refine(isCustomerRef, CUSTOMER_REF_MESSAGE);

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();
export const setupIntentBody = z
  .object({ customerRef: customerRefSchema, officeId: z.string().regex(OFFICE_ID, 'must be an office id').optional() })
  .strict();
export const listQuery = z.object({ customerRef: customerRefSchema, officeId: scopeIdSchema.optional() }).strict();

// The Stripe ids stay encrypted (and unread) on a listing: only the masked card goes out.
const LISTED_FIELDS = { _id: 1, customerRef: 1, officeId: 1, card: 1, createdAt: 1 } as const;
const MAX_LISTED = 100;

type ListedMethod = Pick<SavedPaymentMethodRecord, '_id' | 'customerRef' | 'officeId' | 'card' | 'createdAt'>;

/** What the upstream app sees of a saved card: brand, last four digits and expiry, never a Stripe id or the number. */
function presentMethod(method: ListedMethod) {
  return {
    id: method._id,
    customerRef: method.customerRef,
    ...(method.officeId ? { officeId: method.officeId } : {}),
    ...(method.card
      ? {
          brand: method.card.brand,
          last4: method.card.last4,
          expMonth: method.card.expMonth,
          expYear: method.card.expYear,
        }
      : {}),
    createdAt: method.createdAt.toISOString(),
  };
}

/** The caller's Idempotency-Key, optional here (a SetupIntent moves no money); 400 when one is sent and unusable. */
function optionalIdempotencyKey(request: FastifyRequest): string | undefined {
  const key = request.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(key)) {
    throw new ApiError(
      400,
      'idempotency_key_invalid',
      'an Idempotency-Key header must be 8 to 255 printable characters',
    );
  }
  return key;
}

/**
 * Saving a payer's card: a SetupIntent whose client secret the payer's browser confirms with Stripe.js (the card
 * number goes from the browser to Stripe, never through us), and the masked list of the cards saved.
 * Permissions: `payments:create` / `payments:read`. A saved card exists only to be charged, so whoever may charge a
 * payer may save the payer's card, and whoever may read payments may see its masked details.
 */
export function registerPaymentMethodRoutes(app: FastifyInstance, deps: PaymentMethodRouteDeps): void {
  app.post(
    '/v1/companies/:companyId/payment-methods/setup-intents',
    { bodyLimit: 4 * 1024 },
    async (request, reply) => {
      const { companyId } = parse(companyParams, request.params);
      const idempotencyKey = optionalIdempotencyKey(request);
      const body = parse(setupIntentBody, request.body);
      await deps.authorize(request, 'payments:create', { companyId, officeId: body.officeId });

      const principal = request.principal!;
      const enqueueAudit = async (event: AuditEventInput): Promise<boolean> => {
        try {
          const sealed = await sealRequestContext(request, companyId, deps.encryption);
          await withDeadline(enqueueAuditEvent(deps.queues.audit, { ...event, sealed }), ENQUEUE_DEADLINE_MS, 'audit');
          return true;
        } catch (error) {
          request.log.error({ err: error, action: event.action }, 'could not enqueue audit event');
          return false;
        }
      };
      const result = await createSetupIntent(
        { models: deps.models, encryption: deps.encryption, gateway: deps.gateway, enqueueAudit },
        {
          companyId,
          ...(body.officeId ? { officeId: body.officeId } : {}),
          customerRef: body.customerRef,
          ...(idempotencyKey ? { idempotencyKey } : {}),
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
            'this Idempotency-Key was already used for another office',
          );
        case 'audit_unavailable':
          throw new ApiError(503, 'audit_unavailable', 'the audit trail cannot record this right now; try again');
        case 'gateway_refused':
          if (result.code === 'data_shredded') throw companyShredded();
          throw new ApiError(409, result.code, result.message);
        case 'gateway_failed': {
          const { error } = result;
          if (error.code === 'idempotency_conflict') {
            throw new ApiError(
              422,
              'idempotency_key_conflict',
              'this Idempotency-Key was already used for another payer',
            );
          }
          if (error.kind === 'transient') {
            throw new ApiError(503, 'gateway_unavailable', 'the payment gateway did not answer; try again');
          }
          if (error.code === 'payment_config_invalid') throw new ApiError(409, error.code, error.message);
          request.log.warn({ code: error.code }, 'the payment gateway refused a setup intent');
          throw new ApiError(502, 'gateway_refused', `the payment gateway refused the request (${error.code})`);
        }
      }
      return reply.status(201).send({
        setupIntentId: result.setupIntentId,
        clientSecret: result.clientSecret,
        customerRef: result.customerRef,
      });
    },
  );

  app.get('/v1/companies/:companyId/payment-methods', async (request) => {
    const { companyId } = parse(companyParams, request.params);
    const query = parse(listQuery, request.query);
    const scope = await deps.authorizeList(request, 'payments:read', { companyId, officeId: query.officeId });
    const filter: Record<string, unknown> = { companyId, customerRef: query.customerRef, status: 'active' };
    if (scope.officeIds) filter.officeId = { $in: scope.officeIds };
    const methods = await deps.models.SavedPaymentMethod.find(filter, LISTED_FIELDS)
      .sort({ createdAt: -1, _id: 1 })
      .limit(MAX_LISTED)
      .lean<ListedMethod[]>();
    return { items: methods.map(presentMethod) };
  });
}
