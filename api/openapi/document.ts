import { z } from 'zod';
import { OPERATIONS } from '../contracts';
import { WEBHOOK_EVENT_TYPES, webhookPayloadSchema } from '../../domain/webhook-catalog';
import { errorBody, SHARED_RESPONSES, type OperationSpec, type ResponseSpec } from './spec';

type Json = Record<string, unknown>;

/** OpenAPI's path template for a Fastify route (`:id` → `{id}`). */
export const openApiPath = (route: string) => route.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/** A zod schema as JSON Schema 2020-12 (OpenAPI 3.1's dialect), without its `$schema` line. */
function converted(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json;
  return rest;
}

/** As `converted`, with the error body by reference to its one component. */
export const jsonSchema = (schema: z.ZodType, io: 'input' | 'output'): Json =>
  schema === errorBody ? { $ref: '#/components/schemas/Error' } : converted(schema, io);

/** The properties of an object schema as OpenAPI parameters (path or query). */
function parameters(schema: z.ZodType | undefined, where: 'path' | 'query'): Json[] {
  if (!schema) return [];
  const object = jsonSchema(schema, 'input') as { properties?: Record<string, Json>; required?: string[] };
  return Object.entries(object.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property as Json & { description?: string };
    return {
      name,
      in: where,
      required: where === 'path' || (object.required ?? []).includes(name),
      ...(description ? { description } : {}),
      schema: rest,
    };
  });
}

function response(spec: ResponseSpec): Json {
  const codes = spec.codes?.length ? ` Codes: ${spec.codes.map((c) => `\`${c}\``).join(', ')}.` : '';
  return {
    description: spec.description + codes,
    ...(spec.codes?.length ? { 'x-error-codes': spec.codes } : {}),
    ...(spec.schema || spec.contentType
      ? {
          content: {
            ...(spec.schema ? { 'application/json': { schema: jsonSchema(spec.schema, 'output') } } : {}),
            ...Object.fromEntries(
              [spec.contentType, ...(spec.alsoAs ?? [])]
                .filter((type): type is string => Boolean(type))
                .map((type) => [type, { schema: { type: 'string' } }]),
            ),
          },
        }
      : {}),
  };
}

/** An operation's own responses and the shared ones it can meet (a bearer route meets them all). */
export function responsesOf(operation: OperationSpec): Record<number, ResponseSpec> {
  const shared = Object.entries(SHARED_RESPONSES).filter(
    ([status]) => (operation.security ?? 'bearer') === 'bearer' || ['400', '413', '429', '500', '503'].includes(status),
  );
  const merged: Record<number, ResponseSpec> = Object.fromEntries(shared);
  for (const [status, spec] of Object.entries(operation.responses)) {
    const common = merged[Number(status)];
    // An operation's own codes for a shared status add to the shared ones.
    merged[Number(status)] = common
      ? { ...spec, codes: [...new Set([...(common.codes ?? []), ...(spec.codes ?? [])])] }
      : spec;
  }
  return merged;
}

function operationObject(operation: OperationSpec): Json {
  const security = operation.security ?? 'bearer';
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(operation.description || operation.permission
      ? {
          description: [
            operation.description,
            operation.permission ? `Requires the \`${operation.permission}\` permission.` : undefined,
          ]
            .filter(Boolean)
            .join('\n\n'),
        }
      : {}),
    tags: [operation.tag],
    security:
      security === 'bearer' ? [{ bearer: [] }] : security === 'stripe_signature' ? [{ stripeSignature: [] }] : [],
    parameters: [
      ...parameters(operation.params, 'path'),
      ...parameters(operation.query, 'query'),
      ...(operation.idempotencyKey === 'required' ? [{ $ref: '#/components/parameters/IdempotencyKey' }] : []),
      ...(operation.idempotencyKey === 'optional'
        ? [{ ...IDEMPOTENCY_KEY, required: false, description: `Optional here. ${IDEMPOTENCY_KEY.description}` }]
        : []),
    ],
    ...(operation.body
      ? {
          requestBody: {
            required: true,
            content: { 'application/json': { schema: jsonSchema(operation.body, 'input') } },
          },
        }
      : {}),
    responses: Object.fromEntries(
      Object.entries(responsesOf(operation)).map(([status, spec]) => [status, response(spec)]),
    ),
  };
}

const IDEMPOTENCY_KEY = {
  name: 'Idempotency-Key',
  in: 'header',
  required: true,
  description:
    'A key of your own (8–255 printable characters) per intended operation: a retry with the same key and body answers what the first did; the same key with another body is `422 idempotency_key_conflict`; a missing key is `400 idempotency_key_required`.',
  schema: { type: 'string', pattern: '^[\\x21-\\x7e]{8,255}$' },
};

const TAG_DESCRIPTIONS: Record<string, string> = {
  Payments:
    'One-off charges through Stripe PaymentIntents: requested here, charged by a worker (202, then poll or listen).',
  Refunds: 'Refunds of succeeded payments, never more than was paid.',
  'Payment methods': "Cards saved through Stripe SetupIntents for a payer's subscriptions.",
  Subscriptions: 'Plans, subscriptions, renewals with dunning, billing settings and test clocks.',
  Invoices: 'Invoices and credit notes (PDFs at the PHI level the company chose), invoice settings and payer profiles.',
  'Payment configuration':
    'Gateway keys per company or office, and the BAA or section 1179 attestation that lets them be used.',
  Audit: 'The append-only, hash-chained audit trail.',
  'Stripe webhooks': "Stripe's signed event deliveries, and replaying a stored event.",
  Operations: 'Liveness and readiness probes.',
  'Outgoing webhooks':
    'Endpoints that receive our events (Standard Webhooks signatures), their deliveries, and the events API to catch up.',
};

/** OpenAPI 3.1 `webhooks`: one entry per event type we POST to registered endpoints (docs/outgoing-webhooks.md). */
function webhooksSection(): Json {
  return Object.fromEntries(
    WEBHOOK_EVENT_TYPES.map((type) => [
      type,
      {
        post: {
          operationId: `webhook_${type.replace(/[.]/g, '_')}`,
          summary: `${type} event`,
          description:
            'Headers `webhook-id` (the event id: dedupe on it), `webhook-timestamp` and `webhook-signature` (Standard Webhooks; verify with the `standardwebhooks` library). Answer 2xx within 10 seconds.',
          tags: ['Outgoing webhooks'],
          security: [{ webhookSignature: [] }],
          requestBody: {
            required: true,
            content: { 'application/json': { schema: jsonSchema(webhookPayloadSchema(type), 'output') } },
          },
          responses: { '200': { description: 'Any 2xx acknowledges the delivery; anything else is retried.' } },
        },
      },
    ]),
  );
}

/** The OpenAPI 3.1 document of the api, generated from its operations' schemas (committed as openapi.json). */
export function openApiDocument(operations: readonly OperationSpec[] = OPERATIONS): Json {
  const paths: Record<string, Json> = {};
  for (const operation of operations) {
    const path = (paths[openApiPath(operation.route)] ??= {});
    path[operation.method] = operationObject(operation);
  }
  const tags = [...new Set(operations.map((o) => o.tag))].map((name) => ({
    name,
    description: TAG_DESCRIPTIONS[name] ?? name,
  }));
  return {
    openapi: '3.1.0',
    info: {
      title: 'hipaa-billing',
      version: '1.0.0',
      description:
        'Payments, refunds, subscriptions and invoices for US healthcare organizations. Every request is scoped to a company (and, for office-scoped roles, its offices); POSTs that create something take an `Idempotency-Key`; errors are `{ "error": { "code", "message", "details"? } }` with a stable `code`. Lists page with `limit` and `after` (the `nextCursor` of the previous page).',
      license: { name: 'UNLICENSED', identifier: 'UNLICENSED' },
    },
    servers: [{ url: 'http://127.0.0.1:3000', description: 'npm run dev' }],
    tags,
    paths,
    webhooks: webhooksSection(),
    components: {
      securitySchemes: {
        bearer: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description: 'A JWT from your identity provider (issuer, audience, roles, company and office scope).',
        },
        stripeSignature: {
          type: 'apiKey',
          in: 'header',
          name: 'Stripe-Signature',
          description: "Stripe's webhook signature, verified with the configuration's signing secrets.",
        },
        webhookSignature: {
          type: 'apiKey',
          in: 'header',
          name: 'webhook-signature',
          description:
            "Our outgoing webhooks' Standard Webhooks signature (with `webhook-id` and `webhook-timestamp`), made with the endpoint's signing secret: verify it before trusting a delivery.",
        },
      },
      parameters: {
        IdempotencyKey: IDEMPOTENCY_KEY,
      },
      schemas: { Error: converted(errorBody, 'output') },
    },
  };
}
