import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { IDEMPOTENCY_KEY_PATTERN } from '../domain/payment-request';
import { ApiError } from './errors';
import { stableIssueMessage } from '../platform/issue-messages';

export const scopeIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/** Parses path, query or body with a zod schema; any problem is a 400 listing each field. */
export function parse<S extends z.ZodTypeAny>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value, { error: stableIssueMessage });
  if (!result.success) throw ApiError.validation(result.error);
  return result.data;
}

/** The `Idempotency-Key` header every money-moving POST requires; 400 without a usable one. */
export function requireIdempotencyKey(request: FastifyRequest): string {
  const key = request.headers['idempotency-key'];
  if (typeof key !== 'string' || !IDEMPOTENCY_KEY_PATTERN.test(key)) {
    throw new ApiError(
      400,
      'idempotency_key_required',
      'an Idempotency-Key header of 8 to 255 printable characters is required',
    );
  }
  return key;
}
