import { z } from 'zod';

/**
 * The contract of one api operation, written beside the zod schemas its route validates with (api/contracts/*): the
 * OpenAPI document (api/openapi/document.ts) is generated from these, and in tests every response is checked against
 * it (api/openapi/contract-check.ts), so the document cannot drift from what the api does.
 */
export interface OperationSpec {
  method: 'get' | 'post' | 'put' | 'patch' | 'delete';
  /** The route as Fastify registers it (`/v1/companies/:companyId/payments/:paymentId`). */
  route: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** The permission a bearer token's roles must grant (docs/access.md); absent for unauthenticated routes. */
  permission?: string;
  /** How the caller authenticates: a bearer token (default), Stripe's signature, or nothing. */
  security?: 'bearer' | 'stripe_signature' | 'none';
  params?: z.ZodType;
  query?: z.ZodType;
  body?: z.ZodType;
  /** POSTs that create something take an `Idempotency-Key`. */
  idempotencyKey?: 'required' | 'optional';
  /** Each status this operation answers with itself (the shared ones, 401/403/429/…, are added to all). */
  responses: Record<number, ResponseSpec>;
}

export interface ResponseSpec {
  description: string;
  /** A JSON body; absent for an empty body. */
  schema?: z.ZodType;
  /** A body that is not JSON (a PDF). */
  contentType?: string;
  /** Other content types the same status may carry instead of the JSON body (a stream of NDJSON lines). */
  alsoAs?: string[];
  /** The error `code`s this status carries here. */
  codes?: string[];
  /** Headers this answer carries (by lower-case name); a required one missing is a contract violation in tests. */
  headers?: Record<string, HeaderSpec>;
}

export interface HeaderSpec {
  description: string;
  /** Always sent with this status (the contract check holds the api to it). */
  required?: boolean;
  schema: { type: 'string' | 'integer'; enum?: string[] };
  /** A header many answers share: documented once under `components.headers` by this name, referred to elsewhere. */
  component?: string;
}

/**
 * A schema with examples (`.meta({ examples })`, typed by what the schema takes): the document shows them as the
 * media type's examples, and test/unit/openapi-examples.test.ts parses each with the schema, so none can go stale.
 */
export const withExamples = <T extends z.ZodType>(schema: T, ...examples: z.input<T>[]): T =>
  schema.meta({ examples }) as T;

/** Sent on every answer: the request's id (yours, if you sent a well-formed `x-request-id`). */
export const REQUEST_ID_HEADER: HeaderSpec = {
  description:
    'The id of this request in our logs: the `x-request-id` you sent (16–64 hex digits and dashes, or a ULID), otherwise one we made.',
  required: true,
  schema: { type: 'string' },
  component: 'RequestId',
};

/** On a 202/201 that a retry with the same `Idempotency-Key` answered from the first request's record. */
export const IDEMPOTENT_REPLAYED_HEADER: Record<string, HeaderSpec> = {
  'idempotent-replayed': {
    description: '`true` when this answer replays what an earlier request with the same `Idempotency-Key` made.',
    schema: { type: 'string', enum: ['true'] },
    component: 'IdempotentReplayed',
  },
};

/** The per-minute limits (per source address, then per token holder) on authenticated routes; absent when the limiter's store is down. */
export const RATE_LIMIT_HEADERS: Record<string, HeaderSpec> = {
  'x-ratelimit-limit': {
    description: 'Requests allowed in the current minute.',
    schema: { type: 'integer' },
    component: 'RateLimitLimit',
  },
  'x-ratelimit-remaining': {
    description: 'Requests left in the current minute.',
    schema: { type: 'integer' },
    component: 'RateLimitRemaining',
  },
  'x-ratelimit-reset': {
    description: 'Seconds until the window resets.',
    schema: { type: 'integer' },
    component: 'RateLimitReset',
  },
};

/** Seconds to wait before retrying (429 and 503); the typed client honours it, resending the same `Idempotency-Key`. */
export const RETRY_AFTER: Record<string, HeaderSpec> = {
  'retry-after': {
    description: 'Seconds to wait before retrying.',
    required: true,
    schema: { type: 'integer' },
    component: 'RetryAfter',
  },
};

/** What a 503 says in `Retry-After` (api/errors.ts): outages this api answers 503 for are usually seconds long. */
export const RETRY_AFTER_SECONDS_ON_503 = 2;

/** Every error: `{ error: { code, message, details? } }` (api/errors.ts). */
export const errorBody = z.strictObject({
  error: z.strictObject({
    code: z.string().meta({ description: 'A stable reason code to branch on.' }),
    message: z.string().meta({ description: 'A sentence for people; it may change.' }),
    details: z
      .array(z.strictObject({ field: z.string(), message: z.string() }))
      .optional()
      .meta({ description: "Each field's problem, for `400 invalid_request` and some `409`/`422`." }),
    requestId: z.string().optional().meta({ description: 'On a 500: the id to quote to support.' }),
  }),
});

/** An error answer of an operation: its description and the `code`s it carries. */
export const failure = (description: string, ...codes: string[]): ResponseSpec => ({
  description,
  schema: errorBody,
  codes,
});

/** The answer of every company-scoped operation for a company that does not exist. */
export const companyNotFound = failure('No such company.', 'company_not_found');

/** An ISO-8601 timestamp as the api writes them (`Date.toISOString()`). */
export const timestamp = z.string().meta({ format: 'date-time' });
/** An amount in the currency's minor unit (cents for USD). */
export const minorAmount = z.number().int().nonnegative().meta({ description: "In the currency's minor unit." });
export const currencyCode = z
  .string()
  .regex(/^[a-z]{3}$/)
  .meta({ description: 'ISO 4217, lower case.' });

/** The errors any authenticated operation may answer with, besides its own. */
export const SHARED_RESPONSES: Record<number, ResponseSpec> = {
  400: {
    description: 'The request is not valid (each field named), malformed, or carries a card number.',
    schema: errorBody,
    codes: ['invalid_request', 'malformed_request', 'card_number_refused'],
  },
  401: {
    description: 'No valid bearer token.',
    schema: errorBody,
    codes: ['authorization_missing', 'authorization_malformed', 'token_invalid', 'token_expired', 'token_too_old'],
  },
  403: {
    description: "The token's roles or scope do not allow this, or the request did not come over https.",
    schema: errorBody,
    codes: [
      'permission_missing',
      'company_out_of_scope',
      'office_out_of_scope',
      'office_required',
      'access_reason_required',
      'emergency_access_expired',
      'https_required',
    ],
  },
  413: { description: 'The body is larger than this operation takes.', schema: errorBody, codes: ['body_too_large'] },
  415: { description: 'The body is not JSON.', schema: errorBody, codes: ['unsupported_media_type'] },
  429: {
    description: 'Too many requests from this token or address; retry after the `Retry-After` seconds.',
    schema: errorBody,
    codes: ['rate_limited', 'auth_rate_limited'],
    headers: RETRY_AFTER,
  },
  500: {
    description: 'Something failed on our side; quote `requestId`.',
    schema: errorBody,
    codes: ['internal_error'],
  },
  503: {
    description:
      'A store the operation needs is down, or its audit event could not be recorded; nothing changed unless the message says so.',
    schema: errorBody,
    codes: ['audit_unavailable', 'unavailable'],
    headers: RETRY_AFTER,
  },
};
