import { ConfigError, loadConfig } from '../../platform/config';

const noFiles = (path: string): string => {
  throw new Error(`no file ${path}`);
};

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, noFiles);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration', () => {
  it('starts with safe local defaults in development', () => {
    const config = loadConfig({}, noFiles);
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
    const aws = loadConfig({
      KMS_PROVIDER: 'aws',
      AWS_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:1:key/x',
      AWS_KMS_REGION: 'us-east-1',
    });
    expect(aws.kms).toMatchObject({ provider: 'aws', region: 'us-east-1' });
  });

  it('parses a Stripe API override into host, port and protocol', () => {
    expect(loadConfig({ STRIPE_API_BASE: 'http://127.0.0.1:12111' }, noFiles).stripe.endpoint).toEqual({
      host: '127.0.0.1',
      port: 12111,
      protocol: 'http',
    });
  });

  it('refuses development keys and defaults in production, naming each', () => {
    const problems = problemsOf({ NODE_ENV: 'production', STRIPE_API_BASE: 'http://127.0.0.1:12111' });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual([
      'AUDIT_ANCHOR_KEY_FILE',
      'AUTH_JWT_SECRET',
      'LOCAL_MASTER_KEY_FILE',
      'MONGODB_URI',
      'REDIS_URL',
      'STRIPE_API_BASE',
      'TLS_CERT_FILE/TLS_KEY_FILE',
    ]);
  });

  it('refuses plain-text Redis and MongoDB in production unless they are on this host', () => {
    const production = {
      NODE_ENV: 'production',
      TRUST_PROXY: 'true',
      AUTH_JWKS_URL: 'https://idp.example/jwks',
      AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
    };
    const remote = problemsOf({
      ...production,
      REDIS_URL: 'redis://cache.internal:6379',
      MONGODB_URI: 'mongodb://db1.internal:27017,db2.internal:27017/billing?replicaSet=rs0',
      KMS_PROVIDER: 'kmip',
      KMIP_ENDPOINT: 'kmip.internal:5696',
    });
    expect(remote).toEqual([
      'REDIS_URL: must use TLS (rediss://) unless Redis is on this host',
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
        AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
        TLS_CERT_FILE: '/tls/cert.pem',
        TLS_KEY_FILE: '/tls/key.pem',
      },
      () => '-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n',
    );
    expect(config.auth.hs256Secret).toBeUndefined();
    expect(config.auth.publicKeyPem).toContain('BEGIN PUBLIC KEY');
  });
});
