import pino, { type DestinationStream, type Logger } from 'pino';
import { redactCardNumbers } from './card-numbers';

export type { Logger } from 'pino';

/** Field names that may carry secrets, card data or PHI; censored at a logged object's first three levels. */
export const SENSITIVE_FIELDS = [
  'authorization',
  'cookie',
  'stripe-signature',
  'password',
  'token',
  'secret',
  'secretKey',
  'secret_key',
  'stripeSecretKey',
  'webhookSecret',
  'clientSecret',
  'client_secret',
  'apiKey',
  'masterKey',
  'card',
  'cardNumber',
  'number',
  'cvc',
  'exp_month',
  'exp_year',
  'patientName',
  'name',
  'email',
  'phone',
  'address',
  'dob',
  'dateOfBirth',
  'ssn',
  'diagnosis',
  'notes',
  'memo',
] as const;

const SENSITIVE: ReadonlySet<string> = new Set(SENSITIVE_FIELDS);
const CENSOR = '[REDACTED]';
/** The deepest level looked at: a log line's own fields are level 0, so `{ payment: { card: { number } } }` is 2. */
const DEEPEST = 2;
/**
 * Fields left to their serializers, which write a fixed shape (method and path; status code): walking a live
 * request or reply would cost more than the line.
 */
const SERIALIZED = new Set(['req', 'res']);

/** A log line's fields or a child logger's bindings, censored. */
function censoredFields(fields: Record<string, unknown>): Record<string, unknown> {
  return censored(fields, 0) as Record<string, unknown>;
}

/**
 * `data` as it is to be written, with every sensitive field at `level` and below it (to `DEEPEST`) censored: the
 * same object when it has none, else a copy (what the caller logged is never changed). An object with a `toJSON`
 * is looked into by what that gives, which is what is written; any other (plain objects, arrays, errors, whose own
 * fields pino's error serializer writes beside the message and stack) by its own fields.
 *
 * One pass over the keys with a set lookup each. pino's path redaction (`*.field`, `*.*.field`) was a third of what
 * the api allocated under load: its wildcard redactor parses each of its 60 paths again for every value of every log
 * line and child logger binding, a request id included (docs/performance-history.md, "the log redaction's cost per
 * value").
 */
function censored(data: object, level: number): object {
  let changes: Map<string, unknown> | undefined;
  for (const key of Object.keys(data)) {
    const value: unknown = (data as Record<string, unknown>)[key];
    let written = value;
    if (value === undefined || (level === 0 && SERIALIZED.has(key))) continue;
    if (SENSITIVE.has(key)) written = CENSOR;
    else if (level < DEEPEST && typeof value === 'object' && value !== null) written = censoredValue(value, level + 1);
    if (written !== value) (changes ??= new Map()).set(key, written);
  }
  if (!changes) return data;
  if (Array.isArray(data))
    return data.map((item, index) => (changes.has(String(index)) ? changes.get(String(index)) : item));
  // Descriptors, not assignment: a frozen object or a read-only field is copied as well.
  const descriptors = Object.getOwnPropertyDescriptors(data);
  for (const [key, value] of changes)
    descriptors[key] = { value, enumerable: true, writable: true, configurable: true };
  return Object.create(Object.getPrototypeOf(data), descriptors) as object;
}

function censoredValue(value: object, level: number): object {
  // Bytes have no field names (a Buffer's `toJSON` would list every byte).
  if (ArrayBuffer.isView(value)) return value;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  // An error is written by pino's serializer, not by a `toJSON`.
  if (typeof toJSON !== 'function' || value instanceof Error) return censored(value, level);
  const json: unknown = toJSON.call(value);
  if (typeof json !== 'object' || json === null) return value;
  const written = censored(json, level);
  return written === json ? value : written;
}

/**
 * Fastify logs every request as `req`: only its method and path go out, never the caller's address or the query
 * string, which could carry anything (ids in the path are opaque, and how ops find a request). A card number in the
 * path (the api refuses the request) is written as `[REDACTED]`.
 */
function serializeRequest(req: { method?: unknown; url?: unknown } | null | undefined): {
  method?: unknown;
  url?: string;
} {
  if (typeof req?.url !== 'string') return { method: req?.method, url: undefined };
  const path = req.url.split('?')[0]!;
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // A malformed escape: the path as it came.
  }
  return { method: req.method, url: decoded === path ? redactCardNumbers(path) : redactEscaped(path, decoded) };
}

/** A path with escapes: written decoded and redacted when decoding shows a card number, else as it came. */
function redactEscaped(path: string, decoded: string): string {
  const redacted = redactCardNumbers(decoded);
  return redacted === decoded ? redactCardNumbers(path) : redacted;
}

export function createLogger(options: { level: string; name?: string }, destination?: DestinationStream): Logger {
  const logger = pino(
    {
      level: options.level,
      // Every line's own fields, before they are serialized.
      formatters: { log: censoredFields },
      serializers: { req: serializeRequest },
      // `service`, not pino's `name`: a top-level `name` is censored as possible PHI.
      base: { service: options.name ?? 'hipaa-billing', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
  // And every child logger's bindings, which pino writes once, when the child is made (its `bindings` formatter
  // applies to the root's alone). A child is made from its parent's prototype, so its children come here too.
  const child = logger.child;
  logger.child = function censoredChild(this: Logger, bindings, childOptions) {
    return child.call(this, censoredFields(bindings), childOptions);
  } as Logger['child'];
  return logger;
}
