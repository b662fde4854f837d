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
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["stripe-signature"]',
  'headers.authorization',
  ...SENSITIVE_FIELDS.flatMap((field) => [field, `*.${field}`, `*.*.${field}`]),
];

export function createLogger(
  options: { level: string; name?: string; pretty?: boolean },
  destination?: DestinationStream,
): Logger {
  return pino(
    {
      level: options.level,
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      // `service`, not pino's `name`: a top-level `name` is redacted as possible PHI.
      base: { service: options.name ?? 'hipaa-billing', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
