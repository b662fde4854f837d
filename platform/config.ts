import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { stableIssueMessage } from './issue-messages';
import { isLoopbackHost, parseRedisUrl, RedisUrlError } from './redis-url';

/**
 * The one place the environment is read. Validated once at start-up; an error
 * names every missing or bad variable. Development gets safe local defaults;
 * production refuses them (see `refuseDevelopmentSettings`).
 */

/** The development token secret's file, beside the development master key: random per install, never in the source. */
const DEV_JWT_SECRET_FILE_NAME = 'dev-jwt-secret';
const DEV_ISSUER = 'hipaa-billing-dev';
const DEV_AUDIENCE = 'hipaa-billing';
const DEV_MASTER_KEY_FILE = '.secrets/local-master-key';
const DEV_ANCHOR_KEY_FILE = '.secrets/audit-anchor-ed25519.pem';

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

/** PAYMENT_MAX_AMOUNT's default, in minor units: the bound the OpenAPI document shows (api/contracts). */
export const DEFAULT_PAYMENT_MAX_AMOUNT = 10_000_000;

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  HOST: z.string().default('127.0.0.1'),
  PORT: port.default(3000),

  TLS_CERT_FILE: optionalString,
  TLS_KEY_FILE: optionalString,
  // Behind TLS-terminating proxies: trust X-Forwarded-* from that many hops (`true` = 1) or from those addresses
  // (comma-separated IPs/CIDRs), never from anyone; refuse what they did not receive over https.
  TRUST_PROXY: z
    .string()
    .trim()
    .default('false')
    .transform((v, context): TrustedProxies => {
      if (v === '' || v === 'false' || v === '0') return false;
      if (v === 'true') return 1;
      if (/^[1-9]\d{0,1}$/.test(v)) return Number(v);
      const addresses = v.split(',').map((a) => a.trim());
      if (addresses.every((a) => /^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(a))) return addresses;
      context.addIssue({ code: 'custom', message: 'must be false, true, a hop count (1-99) or IP addresses/CIDRs' });
      return z.NEVER;
    }),
  HSTS_MAX_AGE_SECONDS: z.coerce.number().int().min(0).default(31_536_000),
  RATE_LIMIT_PER_MINUTE: positiveInt.default(600),
  // Per source address, before authentication: bounds what invalid tokens (and anything else) can cost.
  RATE_LIMIT_PER_SOURCE_PER_MINUTE: positiveInt.default(3000),
  // Failed authentication (bad tokens, forged webhook signatures) per source (IPv6 by /64) per minute: then 429.
  AUTH_FAILURES_PER_SOURCE_PER_MINUTE: positiveInt.default(30),

  // One Redis, a Redis Cluster (redis+cluster://seed,seed) or Sentinel (redis+sentinel://s1,s2/master): redis-url.ts.
  REDIS_URL: z
    .string()
    .default('redis://127.0.0.1:6379')
    .superRefine((value, context) => {
      try {
        parseRedisUrl(value);
      } catch (error) {
        if (!(error instanceof RedisUrlError)) throw error;
        context.addIssue({ code: 'custom', message: error.message });
      }
    }),
  // Hash-tagged so every key of one deployment lands in one Redis Cluster slot (BullMQ needs that).
  QUEUE_PREFIX: z
    .string()
    .regex(/^\{[a-z0-9-]+\}$/, 'must look like {name}: a Redis Cluster hash tag')
    .default('{hb}'),
  MONGODB_URI: z
    .string()
    .regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// or mongodb+srv:// URL')
    .default('mongodb://127.0.0.1:27017/hipaa_billing'),

  KEY_VAULT_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, 'must be database.collection')
    .default('encryption.__keyVault'),
  KMS_PROVIDER: z.enum(['local', 'aws', 'gcp', 'azure', 'kmip']).default('local'),
  // With another KMS_PROVIDER, a local master key set here only unwraps the data keys it wrapped (see `keys rotate`).
  LOCAL_MASTER_KEY_FILE: optionalString,
  AWS_KMS_KEY_ARN: optionalString,
  AWS_KMS_REGION: optionalString,
  // A KMS endpoint other than kms.<region>.amazonaws.com (a VPC or FIPS endpoint, a test server): host[:port], TLS always.
  AWS_KMS_ENDPOINT: optionalString.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9.-]+(:\d{1,5})?$/, 'must be host or host:port, without a scheme')
      .optional(),
  ),
  AWS_ACCESS_KEY_ID: optionalString,
  AWS_SECRET_ACCESS_KEY: optionalString,
  GCP_KMS_PROJECT_ID: optionalString,
  GCP_KMS_LOCATION: optionalString,
  GCP_KMS_KEY_RING: optionalString,
  GCP_KMS_KEY_NAME: optionalString,
  GCP_SERVICE_ACCOUNT_EMAIL: optionalString,
  GCP_PRIVATE_KEY: optionalString,
  AZURE_KEY_VAULT_ENDPOINT: optionalString,
  AZURE_KEY_NAME: optionalString,
  AZURE_TENANT_ID: optionalString,
  AZURE_CLIENT_ID: optionalString,
  AZURE_CLIENT_SECRET: optionalString,
  KMIP_ENDPOINT: optionalString,
  // PEM bundle of the CA(s) trusted for TLS to the KMS instead of the public ones (a private KMS, a test server).
  KMS_TLS_CA_FILE: optionalString,
  // PEM client certificate and key presented to a KMIP server that requires mutual TLS.
  KMIP_TLS_CERTIFICATE_KEY_FILE: optionalString,

  AUTH_JWT_SECRET: optionalString,
  AUTH_PUBLIC_KEY_FILE: optionalString,
  AUTH_JWKS_URL: optionalString.pipe(z.string().url().optional()),
  AUTH_ISSUER: z.string().default(DEV_ISSUER),
  AUTH_AUDIENCE: z.string().default(DEV_AUDIENCE),
  // Automatic logoff: a token older than this is refused whatever its expiry says.
  AUTH_MAX_TOKEN_AGE_SECONDS: positiveInt.default(900),
  EMERGENCY_ACCESS_WINDOW_SECONDS: positiveInt.default(600),

  // Stripe API endpoint override, for stripe-mock or the dev simulator. Unset means api.stripe.com.
  STRIPE_API_BASE: optionalString.pipe(z.string().url().optional()),
  STRIPE_TIMEOUT_MS: positiveInt.default(20_000),
  // Stripe test keys (sk_test_) are refused in production unless this is set, e.g. for a staging deployment.
  ALLOW_TEST_KEYS_IN_PRODUCTION: z
    .enum(['true', 'false', ''])
    .default('false')
    .transform((v) => v === 'true'),

  // The interactive API reference at /docs (the document itself is always at /openapi.json): on unless in production.
  API_DOCS: z.enum(['true', 'false', '']).default(''),
  // Every response checked against the OpenAPI document; one that does not match becomes a 500 contract_violation.
  // The test suites turn it on (test/global-setup.ts); it costs a schema validation per response.
  API_CONTRACT_CHECK: z
    .enum(['true', 'false', ''])
    .default('false')
    .transform((v) => v === 'true'),

  // Ed25519 private key (PEM) that signs audit chain anchors; created on first use in development.
  AUDIT_ANCHOR_KEY_FILE: z.string().default(DEV_ANCHOR_KEY_FILE),
  // Ed25519 public key (PEM) that verifies anchors: set it for the api, which then never reads the private key.
  AUDIT_ANCHOR_PUBLIC_KEY_FILE: optionalString,
  AUDIT_ANCHOR_EVERY_MS: positiveInt.default(300_000),
  AUDIT_RETENTION_DAYS: positiveInt.default(6 * 365),
  AUDIT_RETENTION_EVERY_MS: positiveInt.default(24 * 60 * 60 * 1000),

  PAYMENT_MAX_AMOUNT: positiveInt.default(DEFAULT_PAYMENT_MAX_AMOUNT),
  CHARGE_CONCURRENCY: positiveInt.default(10),
  REFUND_CONCURRENCY: positiveInt.default(5),
  RENEWAL_CONCURRENCY: positiveInt.default(10),
  RENEWAL_SWEEP_EVERY_MS: positiveInt.default(60_000),
  AUDIT_CONCURRENCY: positiveInt.default(20),
  /**
   * Invoices rendered at once per worker process, and the worker threads that render their PDFs. One thread by
   * default: a render takes about 10 ms of CPU (about 100 PDFs a second per thread, far above what one process
   * charges or renews), and each thread holds about 75 MB (its own V8 heap, the parsed fonts); an invoices-only pod
   * gives each thread a core of its own (docs/deploy.md).
   */
  INVOICE_CONCURRENCY: positiveInt.default(4),
  INVOICE_RENDER_THREADS: positiveInt.max(64).default(1),
  OUTBOX_SWEEP_EVERY_MS: positiveInt.default(30_000),
  OUTBOX_STALE_AFTER_MS: positiveInt.default(60_000),
  /** Payments and refunds waiting on a gateway decision (or needing attention) this long are asked about at Stripe. */
  RECONCILE_AFTER_MS: positiveInt.default(15 * 60_000),
  RECONCILE_EVERY_MS: positiveInt.default(60_000),
  SHUTDOWN_DEADLINE_MS: positiveInt.default(25_000),
  // Queue dashboard (/admin/queues) sessions: automatic logoff after this much inactivity, and a cap on any session.
  DASHBOARD_IDLE_TIMEOUT_SECONDS: positiveInt.default(900),
  DASHBOARD_SESSION_MAX_SECONDS: positiveInt.default(8 * 60 * 60),
  // ---- metrics (issue 20): Prometheus on a listener of its own (not the api's). METRICS_PORT unset: each process kind
  // its own port (application/ops/serve-metrics.ts: 9464 `npm start`, 9465 api, 9466 workers); `0`: a free one, logged;
  // `off`: none. Gauges that query MongoDB/Redis are computed at most once per METRICS_GAUGE_CACHE_MS.
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  METRICS_PORT: z
    .string()
    .trim()
    .optional()
    .transform((v, context): number | 'off' | undefined => {
      if (v === undefined || v === '') return undefined;
      if (v === 'off') return 'off';
      const parsed = port.safeParse(v);
      if (parsed.success) return parsed.data;
      context.addIssue({ code: 'custom', message: 'must be a port (0: a free one) or off' });
      return z.NEVER;
    }),
  // Required in production when METRICS_HOST is not loopback: scrapes then send `Authorization: Bearer <token>`.
  METRICS_BEARER_TOKEN: optionalString.pipe(z.string().min(32, 'must be at least 32 characters').optional()),
  METRICS_GAUGE_CACHE_MS: z.coerce.number().int().min(0).default(15_000),
  // ---- outgoing webhooks (issue 21 §3, docs/outgoing-webhooks.md). Loopback receivers (a local test or demo
  // receiver): allowed outside production unless `false`; never in production unless `true` (not advised).
  WEBHOOK_ALLOW_LOOPBACK: z.enum(['true', 'false', '']).default(''),
  // Delays before each retry (ms, comma-separated): 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, 24 h, 24 h by default,
  // ten attempts over about 3 days and 3 hours. Tests shorten it.
  WEBHOOK_RETRY_SCHEDULE_MS: z
    .string()
    .trim()
    .default('5000,300000,1800000,7200000,18000000,36000000,36000000,86400000,86400000')
    .transform((v, context): number[] => {
      const steps = v.split(',').map((step) => Number(step.trim()));
      if (steps.length >= 1 && steps.length <= 30 && steps.every((n) => Number.isInteger(n) && n >= 0)) return steps;
      context.addIssue({ code: 'custom', message: 'must be 1 to 30 comma-separated delays in milliseconds' });
      return z.NEVER;
    }),
  WEBHOOK_TIMEOUT_MS: positiveInt.max(10_000).default(10_000),
  // An endpoint whose deliveries have all failed this long is disabled (audited as webhook_endpoint.disabled).
  WEBHOOK_DISABLE_AFTER_MS: positiveInt.default(3 * 24 * 60 * 60 * 1000),
  WEBHOOK_CONCURRENCY: positiveInt.default(10),
  // How long the audit worker reuses a company's endpoint list before reading it again.
  WEBHOOK_ENDPOINT_CACHE_MS: z.coerce.number().int().min(0).default(5_000),
  // A delivery worker's job lock (renewed while it runs) and how often workers look for jobs whose worker died:
  // a delivery cut off by a crash is sent again within about twice this.
  WEBHOOK_STALLED_CHECK_MS: positiveInt.min(1_000).default(30_000),
});

export type Env = z.infer<typeof envSchema>;

/**
 * Credentials of providers other than KMS_PROVIDER, present in the environment: they only unwrap data keys
 * those providers wrapped (until `keys rotate` re-wraps them); new data keys never use them.
 */
export type UnwrapOnlyKms = {
  localKeyFile?: string;
  aws?: { accessKeyId: string; secretAccessKey: string };
  gcp?: { email: string; privateKey: string };
  azure?: { tenantId: string; clientId: string; clientSecret: string };
  kmip?: { endpoint: string };
};

/** TLS to the KMS: a private CA, and the client certificate a KMIP server asks for. */
export type KmsTls = { caFile?: string; kmipCertificateKeyFile?: string };

/** The provider and master key that wrap new data keys, and that `keys rotate` re-wraps every data key under. */
export type KmsTarget =
  | { provider: 'local'; keyFile: string }
  | {
      provider: 'aws';
      region: string;
      keyArn: string;
      endpoint?: string;
      accessKeyId?: string;
      secretAccessKey?: string;
    }
  | {
      provider: 'gcp';
      projectId: string;
      location: string;
      keyRing: string;
      keyName: string;
      email?: string;
      privateKey?: string;
    }
  | {
      provider: 'azure';
      keyVaultEndpoint: string;
      keyName: string;
      tenantId?: string;
      clientId?: string;
      clientSecret?: string;
    }
  | { provider: 'kmip'; endpoint: string };

export type KmsConfig = KmsTarget & { tls: KmsTls; unwrapOnly: UnwrapOnlyKms };

export type AuthConfig = {
  issuer: string;
  audience: string;
  maxTokenAgeSeconds: number;
  emergencyWindowSeconds: number;
  /** Exactly one of these verifies tokens. HS256 secrets are refused in production. */
  hs256Secret?: string;
  publicKeyPem?: string;
  jwksUrl?: string;
};

/** Which proxies' X-Forwarded-* headers are believed: none, the nearest N hops, or these addresses. */
export type TrustedProxies = false | number | string[];

export type StripeEndpoint = { host: string; port: number; protocol: 'http' | 'https' };

export type AppConfig = {
  env: Env['NODE_ENV'];
  logLevel: Env['LOG_LEVEL'];
  http: {
    host: string;
    port: number;
    tls?: { certFile: string; keyFile: string };
    trustProxy: TrustedProxies;
    hstsMaxAgeSeconds: number;
    rateLimitPerMinute: number;
    rateLimitPerSourcePerMinute: number;
    authFailuresPerSourcePerMinute: number;
    /** /docs served (an interactive reference of /openapi.json). */
    docs: boolean;
    /** Responses checked against the OpenAPI document (tests). */
    contractCheck: boolean;
  };
  redisUrl: string;
  queuePrefix: string;
  mongodbUri: string;
  keyVaultNamespace: string;
  kms: KmsConfig;
  auth: AuthConfig;
  stripe: { endpoint?: StripeEndpoint; timeoutMs: number; allowTestKeysInProduction: boolean };
  payments: { maxAmount: number };
  workers: {
    chargeConcurrency: number;
    auditConcurrency: number;
    refundConcurrency: number;
    renewalConcurrency: number;
    renewalSweepEveryMs: number;
    invoiceConcurrency: number;
    invoiceRenderThreads: number;
  };
  outbox: { sweepEveryMs: number; staleAfterMs: number };
  reconcile: { everyMs: number; afterMs: number };
  metrics: { host: string; port?: number | 'off'; bearerToken?: string; gaugeCacheMs: number };
  audit: {
    anchorKeyFile: string;
    /** When set, what the api verifies anchors with: it never loads the signing key. */
    anchorPublicKeyFile?: string;
    anchorEveryMs: number;
    retentionDays: number;
    retentionEveryMs: number;
  };
  shutdownDeadlineMs: number;
  dashboard: { idleTimeoutSeconds: number; sessionMaxSeconds: number };
  webhooks: {
    allowLoopback: boolean;
    retryScheduleMs: number[];
    timeoutMs: number;
    disableAfterMs: number;
    concurrency: number;
    endpointCacheMs: number;
    stalledCheckMs: number;
  };
};

export class ConfigError extends Error {
  constructor(public readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

function requireAll(problems: string[], provider: string, fields: Record<string, string | undefined>): void {
  for (const [name, value] of Object.entries(fields)) {
    if (!value) problems.push(`${name}: required when KMS_PROVIDER=${provider}`);
  }
}

function kmsConfig(env: Env, problems: string[], readFile: (path: string) => string): KmsConfig {
  for (const name of ['KMS_TLS_CA_FILE', 'KMIP_TLS_CERTIFICATE_KEY_FILE'] as const) {
    const file = env[name];
    if (!file) continue;
    try {
      readFile(file);
    } catch {
      problems.push(`${name}: cannot read ${file}`);
    }
  }
  return {
    ...kmsTarget(env, problems),
    tls: { caFile: env.KMS_TLS_CA_FILE, kmipCertificateKeyFile: env.KMIP_TLS_CERTIFICATE_KEY_FILE },
    unwrapOnly: unwrapOnlyKms(env),
  };
}

/** A provider other than KMS_PROVIDER whose credentials are set can still unwrap the data keys it wrapped. */
function unwrapOnlyKms(env: Env): UnwrapOnlyKms {
  const active = env.KMS_PROVIDER;
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = env;
  const { GCP_SERVICE_ACCOUNT_EMAIL: email, GCP_PRIVATE_KEY: privateKey } = env;
  const { AZURE_TENANT_ID: tenantId, AZURE_CLIENT_ID: clientId, AZURE_CLIENT_SECRET: clientSecret } = env;
  return {
    ...(active !== 'local' && env.LOCAL_MASTER_KEY_FILE ? { localKeyFile: env.LOCAL_MASTER_KEY_FILE } : {}),
    ...(active !== 'aws' && accessKeyId && secretAccessKey ? { aws: { accessKeyId, secretAccessKey } } : {}),
    ...(active !== 'gcp' && email && privateKey ? { gcp: { email, privateKey } } : {}),
    ...(active !== 'azure' && tenantId && clientId && clientSecret
      ? { azure: { tenantId, clientId, clientSecret } }
      : {}),
    ...(active !== 'kmip' && env.KMIP_ENDPOINT ? { kmip: { endpoint: env.KMIP_ENDPOINT } } : {}),
  };
}

function kmsTarget(env: Env, problems: string[]): KmsTarget {
  switch (env.KMS_PROVIDER) {
    case 'local':
      return { provider: 'local', keyFile: env.LOCAL_MASTER_KEY_FILE ?? DEV_MASTER_KEY_FILE };
    case 'aws':
      requireAll(problems, 'aws', { AWS_KMS_KEY_ARN: env.AWS_KMS_KEY_ARN, AWS_KMS_REGION: env.AWS_KMS_REGION });
      return {
        provider: 'aws',
        region: env.AWS_KMS_REGION ?? '',
        keyArn: env.AWS_KMS_KEY_ARN ?? '',
        endpoint: env.AWS_KMS_ENDPOINT,
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      };
    case 'gcp':
      requireAll(problems, 'gcp', {
        GCP_KMS_PROJECT_ID: env.GCP_KMS_PROJECT_ID,
        GCP_KMS_LOCATION: env.GCP_KMS_LOCATION,
        GCP_KMS_KEY_RING: env.GCP_KMS_KEY_RING,
        GCP_KMS_KEY_NAME: env.GCP_KMS_KEY_NAME,
      });
      return {
        provider: 'gcp',
        projectId: env.GCP_KMS_PROJECT_ID ?? '',
        location: env.GCP_KMS_LOCATION ?? '',
        keyRing: env.GCP_KMS_KEY_RING ?? '',
        keyName: env.GCP_KMS_KEY_NAME ?? '',
        email: env.GCP_SERVICE_ACCOUNT_EMAIL,
        privateKey: env.GCP_PRIVATE_KEY,
      };
    case 'azure':
      requireAll(problems, 'azure', {
        AZURE_KEY_VAULT_ENDPOINT: env.AZURE_KEY_VAULT_ENDPOINT,
        AZURE_KEY_NAME: env.AZURE_KEY_NAME,
      });
      return {
        provider: 'azure',
        keyVaultEndpoint: env.AZURE_KEY_VAULT_ENDPOINT ?? '',
        keyName: env.AZURE_KEY_NAME ?? '',
        tenantId: env.AZURE_TENANT_ID,
        clientId: env.AZURE_CLIENT_ID,
        clientSecret: env.AZURE_CLIENT_SECRET,
      };
    case 'kmip':
      requireAll(problems, 'kmip', { KMIP_ENDPOINT: env.KMIP_ENDPOINT });
      return { provider: 'kmip', endpoint: env.KMIP_ENDPOINT ?? '' };
  }
}

function authConfig(env: Env, problems: string[], readFile: (path: string) => string): AuthConfig {
  const sources = [env.AUTH_JWT_SECRET, env.AUTH_PUBLIC_KEY_FILE, env.AUTH_JWKS_URL].filter(Boolean);
  if (Boolean(env.TLS_CERT_FILE) !== Boolean(env.TLS_KEY_FILE)) {
    problems.push('TLS_CERT_FILE/TLS_KEY_FILE: set both or neither');
  }
  if (sources.length > 1) {
    problems.push('AUTH_JWT_SECRET, AUTH_PUBLIC_KEY_FILE, AUTH_JWKS_URL: set exactly one way to verify tokens');
  }
  const auth: AuthConfig = {
    issuer: env.AUTH_ISSUER,
    audience: env.AUTH_AUDIENCE,
    maxTokenAgeSeconds: env.AUTH_MAX_TOKEN_AGE_SECONDS,
    emergencyWindowSeconds: env.EMERGENCY_ACCESS_WINDOW_SECONDS,
  };
  if (env.AUTH_PUBLIC_KEY_FILE) {
    try {
      auth.publicKeyPem = readFile(env.AUTH_PUBLIC_KEY_FILE);
    } catch {
      problems.push(`AUTH_PUBLIC_KEY_FILE: cannot read ${env.AUTH_PUBLIC_KEY_FILE}`);
    }
  } else if (env.AUTH_JWKS_URL) {
    auth.jwksUrl = env.AUTH_JWKS_URL;
  } else {
    const secret = env.AUTH_JWT_SECRET ?? (env.NODE_ENV === 'production' ? undefined : devJwtSecret(env, readFile));
    if (secret === undefined) {
      problems.push('AUTH_JWT_SECRET: no way to verify tokens; set AUTH_JWKS_URL or AUTH_PUBLIC_KEY_FILE');
    } else {
      auth.hs256Secret = secret;
      if (secret.length < 32) problems.push('AUTH_JWT_SECRET: must be at least 32 characters');
    }
  }
  return auth;
}

/**
 * Development's token secret: made at random on first use in the directory of the development master key (`.secrets/`,
 * or the test's own), read by every process and dev tool of this install. Nothing printed in the source verifies a
 * token, so an api reachable from elsewhere accepts no token minted by someone who merely read the code.
 */
function devJwtSecret(env: Env, readFile: (path: string) => string): string | undefined {
  const file = join(dirname(env.LOCAL_MASTER_KEY_FILE ?? DEV_MASTER_KEY_FILE), DEV_JWT_SECRET_FILE_NAME);
  const read = () => {
    try {
      return readFile(file).trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const existing = read();
  if (existing) return existing;
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, randomBytes(48).toString('base64url'), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    // Another process of this install made it first: use theirs.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') return undefined;
  }
  return read();
}

function stripeEndpoint(base: string | undefined): StripeEndpoint | undefined {
  if (!base) return undefined;
  const url = new URL(base);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return { host: url.hostname, port: Number(url.port || (protocol === 'http' ? 80 : 443)), protocol };
}

/** Production must be configured on purpose: no development secrets, keys or service defaults. */
function refuseDevelopmentSettings(source: NodeJS.ProcessEnv, env: Env, auth: AuthConfig, problems: string[]): void {
  if (env.NODE_ENV !== 'production') return;
  for (const name of ['REDIS_URL', 'MONGODB_URI'] as const) {
    if (!source[name]) problems.push(`${name}: must be set explicitly in production`);
  }
  if (auth.hs256Secret) {
    problems.push(
      'AUTH_JWT_SECRET: HS256 shared secrets are refused in production; set AUTH_JWKS_URL or AUTH_PUBLIC_KEY_FILE',
    );
  }
  if (env.KMS_PROVIDER === 'local') {
    problems.push(
      'KMS_PROVIDER: local keeps the master key in a file beside the data; production needs aws, gcp, azure or kmip',
    );
  }
  if (env.AUTH_JWKS_URL && !env.AUTH_JWKS_URL.startsWith('https://')) {
    problems.push('AUTH_JWKS_URL: must be https (the keys that verify every token must not travel in the clear)');
  }
  if (env.AUTH_ISSUER === DEV_ISSUER)
    problems.push(`AUTH_ISSUER: the development issuer (${DEV_ISSUER}) is refused in production`);
  if (!source.AUTH_AUDIENCE || env.AUTH_AUDIENCE === DEV_AUDIENCE) {
    problems.push(`AUTH_AUDIENCE: set this deployment's own audience (not the development ${DEV_AUDIENCE})`);
  }
  if (env.TRUST_PROXY !== false && !Array.isArray(env.TRUST_PROXY)) {
    problems.push(
      "TRUST_PROXY: give the proxies' addresses or CIDRs; true or a hop count lets a client that reaches the api directly forge X-Forwarded-For and -Proto",
    );
  }
  for (const [, option, value] of env.MONGODB_URI.matchAll(
    /[?&](tlsAllowInvalidCertificates|tlsInsecure|tlsAllowInvalidHostnames|sslValidate)=(true|false)/gi,
  )) {
    const checksOff = option!.toLowerCase() === 'sslvalidate' ? value === 'false' : value === 'true';
    if (checksOff) problems.push(`MONGODB_URI: ${option}=${value} turns off certificate checks, refused in production`);
  }
  if (env.STRIPE_API_BASE) problems.push('STRIPE_API_BASE: Stripe API overrides are for development and tests only');
  if (!source.AUDIT_ANCHOR_KEY_FILE && !env.AUDIT_ANCHOR_PUBLIC_KEY_FILE) {
    problems.push(
      'AUDIT_ANCHOR_KEY_FILE: the development anchor signing key is refused in production (an api process needs only AUDIT_ANCHOR_PUBLIC_KEY_FILE)',
    );
  }
  if (!(env.TLS_CERT_FILE && env.TLS_KEY_FILE) && !env.TRUST_PROXY) {
    problems.push(
      "TLS_CERT_FILE/TLS_KEY_FILE: production refuses plain HTTP; configure a certificate or TRUST_PROXY with your proxies' addresses",
    );
  }
  const redis = parseRedisUrl(env.REDIS_URL);
  if (!redis.tls && !redis.hosts.every((node) => isLoopbackHost(node.host))) {
    // Every node: a cluster's seeds, or the sentinels (rediss+sentinel also makes the data nodes TLS).
    const scheme = redis.mode === 'single' ? 'rediss://' : `rediss+${redis.mode}://`;
    problems.push(`REDIS_URL: must use TLS (${scheme}) unless every Redis node is on this host`);
  }
  if (!isLoopback(env.MONGODB_URI) && !mongoUsesTls(env.MONGODB_URI)) {
    problems.push('MONGODB_URI: must use TLS (tls=true, or mongodb+srv://) unless MongoDB is on this host');
  }
  // Automatic logoff (HIPAA §164.312(a)(2)(iii)): a dashboard left open ends within these bounds.
  if (env.DASHBOARD_IDLE_TIMEOUT_SECONDS > DASHBOARD_IDLE_CAP_SECONDS) {
    problems.push(`DASHBOARD_IDLE_TIMEOUT_SECONDS: at most ${DASHBOARD_IDLE_CAP_SECONDS} in production`);
  }
  if (env.DASHBOARD_SESSION_MAX_SECONDS > DASHBOARD_SESSION_CAP_SECONDS) {
    problems.push(`DASHBOARD_SESSION_MAX_SECONDS: at most ${DASHBOARD_SESSION_CAP_SECONDS} in production`);
  }
}

/** Production bounds of the dashboard's idle timeout (30 minutes) and session age (12 hours). */
export const DASHBOARD_IDLE_CAP_SECONDS = 30 * 60;
export const DASHBOARD_SESSION_CAP_SECONDS = 12 * 60 * 60;

/** Metrics reachable from other hosts are counts an outsider should not read: production wants a bearer token. */
function refuseOpenMetrics(env: Env, problems: string[]): void {
  if (env.NODE_ENV !== 'production' || env.METRICS_PORT === 'off' || env.METRICS_BEARER_TOKEN) return;
  if (!['127.0.0.1', 'localhost', '::1', '[::1]'].includes(env.METRICS_HOST)) {
    problems.push(
      `METRICS_BEARER_TOKEN: required in production when METRICS_HOST (${env.METRICS_HOST}) is not loopback (or set METRICS_PORT=off)`,
    );
  }
}

function isLoopback(url: string): boolean {
  const hosts = url.replace(/^[a-z+]+:\/\/(?:[^@/]*@)?([^/?]*).*$/, '$1').split(',');
  return hosts.every((host) => isLoopbackHost(host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1')));
}

function mongoUsesTls(uri: string): boolean {
  if (uri.startsWith('mongodb+srv://')) return !/[?&](tls|ssl)=false/.test(uri);
  return /[?&](tls|ssl)=true/.test(uri);
}

export function loadConfig(
  source: NodeJS.ProcessEnv = process.env,
  readFile: (path: string) => string = (path) => readFileSync(path, 'utf8'),
): AppConfig {
  const parsed = envSchema.safeParse(source, { error: stableIssueMessage });
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`));
  }
  const env = parsed.data;
  const problems: string[] = [];
  const kms = kmsConfig(env, problems, readFile);
  const auth = authConfig(env, problems, readFile);
  refuseDevelopmentSettings(source, env, auth, problems);
  refuseOpenMetrics(env, problems);
  if (problems.length > 0) throw new ConfigError(problems);

  return {
    env: env.NODE_ENV,
    logLevel: env.LOG_LEVEL,
    http: {
      host: env.HOST,
      port: env.PORT,
      tls:
        env.TLS_CERT_FILE && env.TLS_KEY_FILE ? { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE } : undefined,
      trustProxy: env.TRUST_PROXY,
      hstsMaxAgeSeconds: env.HSTS_MAX_AGE_SECONDS,
      rateLimitPerMinute: env.RATE_LIMIT_PER_MINUTE,
      rateLimitPerSourcePerMinute: env.RATE_LIMIT_PER_SOURCE_PER_MINUTE,
      authFailuresPerSourcePerMinute: env.AUTH_FAILURES_PER_SOURCE_PER_MINUTE,
      docs: env.API_DOCS === '' ? env.NODE_ENV !== 'production' : env.API_DOCS === 'true',
      contractCheck: env.API_CONTRACT_CHECK,
    },
    redisUrl: env.REDIS_URL,
    queuePrefix: env.QUEUE_PREFIX,
    mongodbUri: env.MONGODB_URI,
    keyVaultNamespace: env.KEY_VAULT_NAMESPACE,
    kms,
    auth,
    stripe: {
      endpoint: stripeEndpoint(env.STRIPE_API_BASE),
      timeoutMs: env.STRIPE_TIMEOUT_MS,
      allowTestKeysInProduction: env.ALLOW_TEST_KEYS_IN_PRODUCTION,
    },
    payments: { maxAmount: env.PAYMENT_MAX_AMOUNT },
    workers: {
      chargeConcurrency: env.CHARGE_CONCURRENCY,
      auditConcurrency: env.AUDIT_CONCURRENCY,
      refundConcurrency: env.REFUND_CONCURRENCY,
      renewalConcurrency: env.RENEWAL_CONCURRENCY,
      renewalSweepEveryMs: env.RENEWAL_SWEEP_EVERY_MS,
      invoiceConcurrency: env.INVOICE_CONCURRENCY,
      invoiceRenderThreads: env.INVOICE_RENDER_THREADS,
    },
    outbox: { sweepEveryMs: env.OUTBOX_SWEEP_EVERY_MS, staleAfterMs: env.OUTBOX_STALE_AFTER_MS },
    reconcile: { everyMs: env.RECONCILE_EVERY_MS, afterMs: env.RECONCILE_AFTER_MS },
    metrics: {
      host: env.METRICS_HOST,
      port: env.METRICS_PORT,
      bearerToken: env.METRICS_BEARER_TOKEN,
      gaugeCacheMs: env.METRICS_GAUGE_CACHE_MS,
    },
    audit: {
      anchorKeyFile: env.AUDIT_ANCHOR_KEY_FILE,
      anchorPublicKeyFile: env.AUDIT_ANCHOR_PUBLIC_KEY_FILE,
      anchorEveryMs: env.AUDIT_ANCHOR_EVERY_MS,
      retentionDays: env.AUDIT_RETENTION_DAYS,
      retentionEveryMs: env.AUDIT_RETENTION_EVERY_MS,
    },
    shutdownDeadlineMs: env.SHUTDOWN_DEADLINE_MS,
    dashboard: {
      idleTimeoutSeconds: env.DASHBOARD_IDLE_TIMEOUT_SECONDS,
      sessionMaxSeconds: env.DASHBOARD_SESSION_MAX_SECONDS,
    },
    webhooks: {
      allowLoopback:
        env.WEBHOOK_ALLOW_LOOPBACK === '' ? env.NODE_ENV !== 'production' : env.WEBHOOK_ALLOW_LOOPBACK === 'true',
      retryScheduleMs: env.WEBHOOK_RETRY_SCHEDULE_MS,
      timeoutMs: env.WEBHOOK_TIMEOUT_MS,
      disableAfterMs: env.WEBHOOK_DISABLE_AFTER_MS,
      concurrency: env.WEBHOOK_CONCURRENCY,
      endpointCacheMs: env.WEBHOOK_ENDPOINT_CACHE_MS,
      stalledCheckMs: env.WEBHOOK_STALLED_CHECK_MS,
    },
  };
}
