import { z } from 'zod';
import { ApiError } from './errors';

export const scopeIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/);

/** Parses path, query or body with a zod schema; any problem is a 400 listing each field. */
export function parse<S extends z.ZodTypeAny>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw ApiError.validation(result.error);
  return result.data;
}
