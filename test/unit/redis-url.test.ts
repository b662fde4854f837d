import { Cluster, Redis } from 'ioredis';
import { ConfigError, loadConfig } from '../../platform/config';
import { createRedisConnection } from '../../platform/redis';
import { parseRedisUrl, RedisUrlError } from '../../platform/redis-url';

const devSecretOnly = (path: string): string => {
  if (path.endsWith('dev-jwt-secret')) return 'a-random-per-install-development-token-secret';
  throw new Error(`no file ${path}`);
};

function problemsOf(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, devSecretOnly);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

function refusal(url: string): string {
  try {
    parseRedisUrl(url);
  } catch (error) {
    if (error instanceof RedisUrlError) return error.message;
    throw error;
  }
  throw new Error('expected a RedisUrlError');
}

describe('REDIS_URL', () => {
  it('reads one Redis as before, with credentials, TLS and a database', () => {
    expect(parseRedisUrl('redis://127.0.0.1:6379')).toEqual({
      mode: 'single',
      url: 'redis://127.0.0.1:6379',
      tls: false,
      hosts: [{ host: '127.0.0.1', port: 6379 }],
    });
    expect(parseRedisUrl('rediss://default:p%40ss@cache.example.internal:6380/2')).toMatchObject({
      mode: 'single',
      tls: true,
      username: 'default',
      password: 'p@ss',
      hosts: [{ host: 'cache.example.internal', port: 6380 }],
    });
  });

  it('reads a Redis Cluster from its seed nodes, default port 6379, IPv6 in brackets', () => {
    expect(parseRedisUrl('rediss+cluster://app:secret@node-a.internal:7000,node-b.internal,[fd00::5]:7002')).toEqual({
      mode: 'cluster',
      tls: true,
      username: 'app',
      password: 'secret',
      hosts: [
        { host: 'node-a.internal', port: 7000 },
        { host: 'node-b.internal', port: 6379 },
        { host: 'fd00::5', port: 7002 },
      ],
    });
    // One seed is enough: a managed cluster's configuration endpoint.
    expect(parseRedisUrl('redis+cluster://clustercfg.billing.example.cache.amazonaws.com:6379').hosts).toHaveLength(1);
  });

  it('reads Sentinel: the sentinels, the master name, a database and the sentinels’ own credentials', () => {
    expect(
      parseRedisUrl(
        'rediss+sentinel://:redis-pass@s1.internal,s2.internal:26380/billing-master/3?sentinelUsername=sen&sentinelPassword=s%26cret',
      ),
    ).toEqual({
      mode: 'sentinel',
      tls: true,
      password: 'redis-pass',
      hosts: [
        { host: 's1.internal', port: 26379 },
        { host: 's2.internal', port: 26380 },
      ],
      name: 'billing-master',
      db: 3,
      sentinelUsername: 'sen',
      sentinelPassword: 's&cret',
    });
  });

  it('says what is wrong, never repeating the URL (it may hold a password)', () => {
    const cases: Array<[string, RegExp]> = [
      ['http://127.0.0.1:6379', /must start with redis:\/\/, rediss:\/\/, redis\+cluster:\/\//],
      ['redis://a:7000,b:7001', /names 2 hosts: a Redis Cluster is redis\+cluster:\/\/host:port,host:port/],
      ['rediss://a:7000,b:7001', /rediss\+cluster:\/\//],
      ['redis+cluster://a:7000,b:99999', /host 2 of 2 has no valid port/],
      ['redis+cluster://a:7000,,b:7001', /host 2 of 3 is missing or malformed/],
      ['redis+cluster://a:7000/1', /only database 0/],
      ['redis+cluster://a:7000?tls=true', /takes no \?options/],
      ['redis+sentinel://s1:26379', /needs the master's name as its path/],
      ['redis+sentinel://s1:26379/m?sentinelPasword=x', /unknown Sentinel option "sentinelPasword"/],
      ['redis://127.0.0.1:6379/db0', /database number/],
      ['redis://user:%zz@127.0.0.1', /password is not valid percent-encoding/],
    ];
    for (const [url, message] of cases) {
      const said = refusal(url);
      expect(said).toMatch(message);
      expect(said).not.toContain(url);
    }
    expect(refusal('redis+cluster://u:hunter2@a:7000,b:0')).not.toContain('hunter2');
  });

  it('names REDIS_URL in the configuration error', () => {
    expect(problemsOf({ REDIS_URL: 'redis+cluster://a:7000,b:x' })).toEqual([
      'REDIS_URL: host 2 of 2 has no valid port (1-65535)',
    ]);
    expect(loadConfig({ REDIS_URL: 'redis+cluster://127.0.0.1:7000,127.0.0.1:7001' }, devSecretOnly).redisUrl).toBe(
      'redis+cluster://127.0.0.1:7000,127.0.0.1:7001',
    );
  });

  it('requires TLS in production unless every node (each seed, each sentinel) is on this host', () => {
    const production = {
      NODE_ENV: 'production',
      TRUST_PROXY: '10.0.0.0/8',
      AUTH_JWKS_URL: 'https://idp.example/jwks',
      AUTH_ISSUER: 'https://idp.example',
      AUTH_AUDIENCE: 'billing-api',
      AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
      KMS_PROVIDER: 'aws',
      AWS_KMS_KEY_ARN: 'arn:aws:kms:us-east-1:1:key/x',
      AWS_KMS_REGION: 'us-east-1',
      MONGODB_URI: 'mongodb+srv://db.example/hipaa_billing',
    };
    const redisProblems = (url: string) =>
      problemsOf({ ...production, REDIS_URL: url }).filter((p) => p.startsWith('REDIS_URL'));
    expect(redisProblems('redis+cluster://127.0.0.1:7000,10.0.0.5:7001')).toEqual([
      'REDIS_URL: must use TLS (rediss+cluster://) unless every Redis node is on this host',
    ]);
    expect(redisProblems('redis+sentinel://10.0.0.7:26379/billing')).toEqual([
      'REDIS_URL: must use TLS (rediss+sentinel://) unless every Redis node is on this host',
    ]);
    expect(redisProblems('redis://10.0.0.5:6379')).toEqual([
      'REDIS_URL: must use TLS (rediss://) unless every Redis node is on this host',
    ]);
    expect(redisProblems('redis+cluster://127.0.0.1:7000,127.0.0.2:7001')).toEqual([]);
    expect(redisProblems('rediss+cluster://a.example:7000,b.example:7001')).toEqual([]);
    expect(redisProblems('rediss+sentinel://s1.example,s2.example/billing')).toEqual([]);
    // A name that only starts like a loopback address is not one.
    expect(redisProblems('redis+cluster://127.0.0.1.attacker.example:7000')).toHaveLength(1);
  });
});

describe('the connection REDIS_URL makes', () => {
  it('is an ioredis Cluster for redis+cluster, with TLS and credentials on every node and fail-fast for the api', () => {
    const api = createRedisConnection('rediss+cluster://app:secret@127.0.0.1:1,127.0.0.1:2', 'api');
    const worker = createRedisConnection('redis+cluster://127.0.0.1:1', 'worker');
    try {
      expect(api).toBeInstanceOf(Cluster);
      const apiOptions = (api as Cluster).options;
      expect(apiOptions.enableOfflineQueue).toBe(false);
      expect(apiOptions.redisOptions).toMatchObject({
        username: 'app',
        password: 'secret',
        tls: {},
        maxRetriesPerRequest: 1,
        commandTimeout: 2_000,
      });
      // BullMQ's workers need maxRetriesPerRequest null on the nodes, and queue commands while the cluster heals.
      expect(worker).toBeInstanceOf(Cluster);
      expect((worker as Cluster).options.redisOptions).toMatchObject({ maxRetriesPerRequest: null });
      expect((worker as Cluster).options.enableOfflineQueue).toBe(true);
      expect((worker as Cluster).options.redisOptions?.tls).toBeUndefined();
    } finally {
      api.disconnect();
      worker.disconnect();
    }
  });

  it('is a Sentinel-backed Redis for redis+sentinel, TLS to the sentinels and the master with rediss', () => {
    const redis = createRedisConnection(
      'rediss+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/billing?sentinelPassword=sp',
      'worker',
    );
    try {
      expect(redis).toBeInstanceOf(Redis);
      expect((redis as Redis).options).toMatchObject({
        sentinels: [
          { host: '127.0.0.1', port: 1 },
          { host: '127.0.0.1', port: 2 },
        ],
        name: 'billing',
        password: 'pw',
        sentinelPassword: 'sp',
        enableTLSForSentinelMode: true,
        maxRetriesPerRequest: null,
      });
    } finally {
      redis.disconnect();
    }
  });
});
