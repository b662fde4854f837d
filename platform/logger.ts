import pino, { type DestinationStream, type Logger } from 'pino';
import { redactCardNumbers } from './card-numbers';

export type { Logger } from 'pino';

/** Field names that may carry secrets, card data or PHI; redacted at any of the first two levels. */
export const SENSITIVE_FIELDS = [
  'authorization',
  'cookie',
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

export const REDACT_PATHS: string[] = [
  'req.headers["stripe-signature"]',
  ...SENSITIVE_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
];

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
  return pino(
    {
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      serializers: { req: serializeRequest },
      // `service`, not pino's `name`: a top-level `name` is redacted as possible PHI.
      base: { service: options.name ?? 'hipaa-billing', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
