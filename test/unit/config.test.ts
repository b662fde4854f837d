import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../platform/config';

const noFiles = (path: string): string => {
  throw new Error(`no file ${path}`);
};

/** Only the development token secret's file exists (as `npm run dev` leaves it in .secrets/). */
const devSecretOnly = (path: string): string => {
  if (path.endsWith('dev-jwt-secret')) return 'a-random-per-install-development-token-secret';
  return noFiles(path);
};

/** What every production configuration here sets besides its stores: trusted proxies, the identity provider, keys. */
const PRODUCTION_IDENTITY = {
  NODE_ENV: 'production',
  TRUST_PROXY: '10.0.0.0/8',
  AUTH_JWKS_URL: 'https://idp.example/jwks',
  AUTH_ISSUER: 'https://idp.example',
  AUTH_AUDIENCE: 'billing-api',
  AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
};

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, devSecretOnly);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('starts with safe local defaults in development', () => {
    const config = loadConfig({}, devSecretOnly);
    expect(config).toMatchObject({
      env: 'development',
      redisUrl: 'redis://127.0.0.1:6379',
      mongodbUri: 'mongodb://127.0.0.1:27017/hipaa_billing',
      queuePrefix: '{hb}',
      kms: { provider: 'local', keyFile: '.secrets/local-master-key' },
      http: { host: '127.0.0.1', port: 3000 },
    });
    expect(config.auth.hs256Secret).toBeDefined();
    expect(config.stripe.endpoint).toBeUndefined();
  });

  it('names every missing or bad variable in one error', () => {
    const problems = problemsOf({ PORT: 'eighty', REDIS_URL: 'not a url', NODE_ENV: 'staging', QUEUE_PREFIX: 'hb' });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual(['NODE_ENV', 'PORT', 'QUEUE_PREFIX', 'REDIS_URL']);
  });

  it('requires the settings of the chosen KMS provider', () => {
    expect(problemsOf({ KMS_PROVIDER: 'aws' })).toEqual([
      'AWS_KMS_KEY_ARN: required when KMS_PROVIDER=aws',
      'AWS_KMS_REGION: required when KMS_PROVIDER=aws',
    ]);
    const aws = loadConfig(
      {
        KMS_PROVIDER: 'aws',
        AWS_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:1:key/x',
        AWS_KMS_REGION: 'us-east-1',
      },
      devSecretOnly,
    );
    expect(aws.kms).toMatchObject({ provider: 'aws', region: 'us-east-1' });
  });

  it('parses a Stripe API override into host, port and protocol', () => {
    expect(loadConfig({ STRIPE_API_BASE: 'http://127.0.0.1:12111' }, devSecretOnly).stripe.endpoint).toEqual({
      host: '127.0.0.1',
      port: 12111,
      protocol: 'http',
    });
  });

  it('refuses development keys and defaults in production, naming each', () => {
    const problems = problemsOf({ NODE_ENV: 'production', STRIPE_API_BASE: 'http://127.0.0.1:12111' });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual([
      'AUDIT_ANCHOR_KEY_FILE',
      'AUTH_AUDIENCE',
      'AUTH_ISSUER',
      'AUTH_JWT_SECRET',
      'KMS_PROVIDER',
      'MONGODB_URI',
      'REDIS_URL',
      'STRIPE_API_BASE',
      'TLS_CERT_FILE/TLS_KEY_FILE',
    ]);
  });

  it('serves the interactive API reference (/docs) in development, in production only when API_DOCS=true', () => {
    expect(loadConfig({}, devSecretOnly).http).toMatchObject({ docs: true, contractCheck: false });
    expect(loadConfig({ API_DOCS: 'false' }, devSecretOnly).http.docs).toBe(false);
    const production = {
      ...PRODUCTION_IDENTITY,
      REDIS_URL: 'redis://127.0.0.1:6379',
      MONGODB_URI: 'mongodb://localhost:27017/billing',
      KMS_PROVIDER: 'kmip',
      KMIP_ENDPOINT: 'kmip.internal:5696',
    };
    expect(loadConfig(production, noFiles).http.docs).toBe(false);
    expect(loadConfig({ ...production, API_DOCS: 'true' }, noFiles).http.docs).toBe(true);
  });

  it('refuses plain-text Redis and MongoDB in production unless they are on this host', () => {
    const production = PRODUCTION_IDENTITY;
    const remote = problemsOf({
      ...production,
      REDIS_URL: 'redis://cache.internal:6379',
      MONGODB_URI: 'mongodb://db1.internal:27017,db2.internal:27017/billing?replicaSet=rs0',
      KMS_PROVIDER: 'kmip',
      KMIP_ENDPOINT: 'kmip.internal:5696',
    });
    expect(remote).toEqual([
      'REDIS_URL: must use TLS (rediss://) unless every Redis node is on this host',
      'MONGODB_URI: must use TLS (tls=true, or mongodb+srv://) unless MongoDB is on this host',
    ]);
    expect(() =>
      loadConfig({
        ...production,
        REDIS_URL: 'redis://127.0.0.1:6379',
        MONGODB_URI: 'mongodb://localhost:27017/billing',
        KMS_PROVIDER: 'kmip',
        KMIP_ENDPOINT: 'kmip.internal:5696',
      }),
    ).not.toThrow();
  });

  it('accepts an explicit production configuration', () => {
    const config = loadConfig(
      {
        NODE_ENV: 'production',
        REDIS_URL: 'rediss://redis.internal:6380',
        MONGODB_URI: 'mongodb://db.internal:27017/billing?tls=true',
        KMS_PROVIDER: 'gcp',
        GCP_KMS_PROJECT_ID: 'p',
        GCP_KMS_LOCATION: 'us',
        GCP_KMS_KEY_RING: 'r',
        GCP_KMS_KEY_NAME: 'k',
        AUTH_PUBLIC_KEY_FILE: '/keys/idp.pem',
        AUTH_ISSUER: 'https://idp.example',
        AUTH_AUDIENCE: 'billing-api',
        AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
        TLS_CERT_FILE: '/tls/cert.pem',
        TLS_KEY_FILE: '/tls/key.pem',
      },
      () => '-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n',
    );
    expect(config.auth.hs256Secret).toBeUndefined();
    expect(config.auth.publicKeyPem).toContain('BEGIN PUBLIC KEY');
  });

  describe('production refuses what only development may do (issue 20)', () => {
    const production = {
      NODE_ENV: 'production',
      REDIS_URL: 'rediss://redis.internal:6380',
      MONGODB_URI: 'mongodb://db.internal:27017/billing?tls=true',
      KMS_PROVIDER: 'kmip',
      KMIP_ENDPOINT: 'kmip.internal:5696',
      AUTH_JWKS_URL: 'https://idp.example/jwks',
      AUTH_ISSUER: 'https://idp.example',
      AUTH_AUDIENCE: 'billing-api',
      AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
      TRUST_PROXY: '10.0.0.0/8,192.168.1.4',
    };
    it('accepts the baseline', () => {
      expect(() => loadConfig(production, noFiles)).not.toThrow();
    });
    it.each([
      [{ AUTH_JWKS_URL: 'http://idp.example/jwks' }, 'AUTH_JWKS_URL'],
      [{ TRUST_PROXY: 'true' }, 'TRUST_PROXY'],
      [{ TRUST_PROXY: '2' }, 'TRUST_PROXY'],
      [{ REDIS_URL: 'redis://127.0.0.1.attacker.example:6379' }, 'REDIS_URL'],
      [{ MONGODB_URI: 'mongodb://127.0.0.1.attacker.example:27017/billing' }, 'MONGODB_URI'],
      [{ MONGODB_URI: 'mongodb://db.internal/billing?tls=true&tlsAllowInvalidCertificates=true' }, 'MONGODB_URI'],
      [
        { MONGODB_URI: 'mongodb://db.internal/billing?tls=true&tlsAllowInvalidHostnames=false&tlsInsecure=true' },
        'MONGODB_URI',
      ],
      [{ MONGODB_URI: 'mongodb://db.internal/billing?tls=true&tlsAllowInvalidHostnames=true' }, 'MONGODB_URI'],
      [{ AUTH_ISSUER: 'hipaa-billing-dev' }, 'AUTH_ISSUER'],
      [{ AUTH_AUDIENCE: 'hipaa-billing' }, 'AUTH_AUDIENCE'],
      [{ KMS_PROVIDER: 'local', LOCAL_MASTER_KEY_FILE: '/keys/master.key' }, 'KMS_PROVIDER'],
      [{ DASHBOARD_IDLE_TIMEOUT_SECONDS: '3600' }, 'DASHBOARD_IDLE_TIMEOUT_SECONDS'],
      [{ DASHBOARD_SESSION_MAX_SECONDS: String(24 * 60 * 60) }, 'DASHBOARD_SESSION_MAX_SECONDS'],
    ])('%j is refused, naming %s', (change, name) => {
      const problems = problemsOf({ ...production, ...change });
      expect(problems.map((p) => p.split(':')[0])).toContain(name);
    });
    it('a loopback host is local only by its numbers', () => {
      expect(() => loadConfig({ ...production, REDIS_URL: 'redis://127.0.0.2:6379' }, noFiles)).not.toThrow();
    });
  });

  it('development verifies tokens with a random secret of this install, never one printed in the source', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hb-config-'));
    try {
      const env = { LOCAL_MASTER_KEY_FILE: join(dir, 'local-master-key') };
      const first = loadConfig(env).auth.hs256Secret;
      expect(first).toMatch(/^[A-Za-z0-9_-]{64}$/);
      expect(readFileSync(join(dir, 'dev-jwt-secret'), 'utf8')).toBe(first);
      expect(statSync(join(dir, 'dev-jwt-secret')).mode & 0o777).toBe(0o600);
      // Every process of the install reads the same one; another install has its own.
      expect(loadConfig(env).auth.hs256Secret).toBe(first);
      const other = mkdtempSync(join(tmpdir(), 'hb-config-'));
      expect(loadConfig({ LOCAL_MASTER_KEY_FILE: join(other, 'k') }).auth.hs256Secret).not.toBe(first);
      rmSync(other, { recursive: true, force: true });
      expect(JSON.stringify(loadConfig(env))).not.toContain('dev-only-hs256-secret');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
