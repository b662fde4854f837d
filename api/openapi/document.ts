import { z } from 'zod';
import { OPERATIONS } from '../contracts';
import { WEBHOOK_EVENT_TYPES, webhookPayloadSchema } from '../../domain/webhook-catalog';
import {
  errorBody,
  IDEMPOTENT_REPLAYED_HEADER,
  RATE_LIMIT_HEADERS,
  REQUEST_ID_HEADER,
  RETRY_AFTER,
  SHARED_RESPONSES,
  type HeaderSpec,
  type OperationSpec,
  type ResponseSpec,
} from './spec';

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

/**
 * A JSON media type: the schema, and the examples its zod schema carries (`withExamples`) lifted to the media type,
 * where OpenAPI tools show them (and Redocly's lint checks them against the schema).
 */
function jsonMediaType(schema: z.ZodType, io: 'input' | 'output'): Json {
  // From the registry, not the converted schema: zod drops an input schema's examples when it transforms (`currency`
  // is lower-cased), though they are exactly what a caller sends.
  const examples = z.globalRegistry.get(schema)?.examples;
  const { examples: _converted, ...rest } = jsonSchema(schema, io);
  if (!Array.isArray(examples) || examples.length === 0) return { schema: rest };
  return {
    schema: rest,
    examples: Object.fromEntries(examples.map((value, i) => [i === 0 ? 'example' : `example${i + 1}`, { value }])),
  };
}

const headerObject = (header: HeaderSpec): Json => ({
  description: header.description,
  ...(header.required ? { required: true } : {}),
  schema: header.schema,
});

function response(spec: ResponseSpec): Json {
  const codes = spec.codes?.length ? ` Codes: ${spec.codes.map((c) => `\`${c}\``).join(', ')}.` : '';
  return {
    description: spec.description + codes,
    ...(spec.codes?.length ? { 'x-error-codes': spec.codes } : {}),
    headers: Object.fromEntries(
      Object.entries({ 'x-request-id': REQUEST_ID_HEADER, ...spec.headers }).map(([name, header]) => [
        name,
        header.component ? { $ref: `#/components/headers/${header.component}` } : headerObject(header),
      ]),
    ),
    ...(spec.schema || spec.contentType
      ? {
          content: {
            ...(spec.schema ? { 'application/json': jsonMediaType(spec.schema, 'output') } : {}),
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

/**
 * An operation's own responses and the shared ones it can meet (a bearer route meets them all), with the headers they
 * carry: the rate limits on a bearer route's answers, `idempotent-replayed` on an idempotent POST's success.
 */
export function responsesOf(operation: OperationSpec): Record<number, ResponseSpec> {
  const bearer = (operation.security ?? 'bearer') === 'bearer';
  const shared = Object.entries(SHARED_RESPONSES).filter(
    ([status]) => bearer || ['400', '413', '429', '500', '503'].includes(status),
  );
  const merged: Record<number, ResponseSpec> = Object.fromEntries(shared);
  for (const [status, spec] of Object.entries(operation.responses)) {
    const common = merged[Number(status)];
    // An operation's own codes and headers for a shared status add to the shared ones.
    merged[Number(status)] = common
      ? {
          ...spec,
          codes: [...new Set([...(common.codes ?? []), ...(spec.codes ?? [])])],
          headers: { ...common.headers, ...spec.headers },
        }
      : spec;
  }
  for (const [status, spec] of Object.entries(merged)) {
    const success = Number(status) < 300;
    merged[Number(status)] = {
      ...spec,
      headers: {
        ...(bearer ? RATE_LIMIT_HEADERS : {}),
        ...(success && operation.idempotencyKey === 'required' ? IDEMPOTENT_REPLAYED_HEADER : {}),
        ...spec.headers,
      },
    };
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
            content: { 'application/json': jsonMediaType(operation.body, 'input') },
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
      headers: Object.fromEntries(
        [
          REQUEST_ID_HEADER,
          ...Object.values({ ...RATE_LIMIT_HEADERS, ...RETRY_AFTER, ...IDEMPOTENT_REPLAYED_HEADER }),
        ].map((header) => [header.component, headerObject(header)]),
      ),
      schemas: { Error: converted(errorBody, 'output') },
    },
  };
}
