import type { FastifyError, FastifyInstance } from 'fastify';
import type { ZodError } from 'zod';
import { TokenStoreUnavailableError } from '../models/document-tokens';
import { DocumentWriteUnavailableError } from '../models/serialized-writes';
import { isShreddedDataError } from '../models/encryption';
import { RETRY_AFTER_SECONDS_ON_503 } from './openapi/spec';

export interface ProblemDetail {
  field: string;
  message: string;
}

/** An error the client can act on: status, a stable code, a sentence, and per-field problems. */
export class ApiError extends Error {
  constructor(
    public readonly statusCode: number,
    public readonly code: string,
    message: string,
    public readonly details?: ProblemDetail[],
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** A 400 listing each field's problem. */
  static invalid(details: ProblemDetail[]): ApiError {
    return new ApiError(400, 'invalid_request', 'the request is not valid; see details', details);
  }

  static validation(error: ZodError): ApiError {
    return ApiError.invalid(
      error.issues.map((issue) => {
        if (issue.code === 'unrecognized_keys') {
          return { field: issue.keys.join(', '), message: 'is not an accepted field' };
        }
        return { field: issue.path.join('.') || '(body)', message: issue.message };
      }),
    );
  }
}

/** Every error leaves as `{ error: { code, message, details? } }`; nothing internal leaks on a 5xx. */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      // A store or queue is briefly out: say when to try again (the typed client waits that long, same key).
      if (error.statusCode === 503) void reply.header('retry-after', String(RETRY_AFTER_SECONDS_ON_503));
      return reply.status(error.statusCode).send({
        error: { code: error.code, message: error.message, ...(error.details ? { details: error.details } : {}) },
      });
    }
    if (error instanceof TokenStoreUnavailableError || error instanceof DocumentWriteUnavailableError) {
      // A settings write is made only with its cache token set first (models/document-tokens.ts), a serialized write
      // only under its lease (models/serialized-writes.ts): nothing was stored.
      void reply.header('retry-after', String(RETRY_AFTER_SECONDS_ON_503));
      return reply.status(503).send({
        error: { code: 'unavailable', message: 'a store this change needs is briefly unavailable; try again' },
      });
    }
    if (isShreddedDataError(error)) {
      return reply.status(410).send({
        error: {
          code: 'data_shredded',
          message: "this company's encrypted data was destroyed (crypto-shredded) and cannot be read",
        },
      });
    }
    const status = error.statusCode ?? 500;
    if (status >= 500) {
      request.log.error({ err: error }, 'request failed');
      return reply
        .status(500)
        .send({ error: { code: 'internal_error', message: 'internal error', requestId: request.id } });
    }
    // Fastify's own 4xx (malformed JSON, body too large, wrong content type).
    const code =
      error.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
        ? 'body_too_large'
        : error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
          ? 'unsupported_media_type'
          : 'malformed_request';
    return reply.status(status).send({ error: { code, message: error.message } });
  });
  app.setNotFoundHandler((_request, reply) => {
    void reply.status(404).send({ error: { code: 'route_not_found', message: 'no such route' } });
  });
}
