import pino, { type DestinationStream, type Logger } from 'pino';

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
 * string, which could carry anything (ids in the path are opaque, and how ops find a request).
 */
function serializeRequest(req: { method?: unknown; url?: unknown } | null | undefined): {
  method?: unknown;
  url?: string;
} {
  return { method: req?.method, url: typeof req?.url === 'string' ? req.url.split('?')[0] : undefined };
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
