import { ConfigError, loadConfig } from '../../platform/config';

/** Issue 20: where /metrics listens, and who may read it in production. */
/** No files, but the development token secret `npm run dev` leaves in .secrets/. */
const noFiles = (path: string): string => {
  if (path.endsWith('dev-jwt-secret')) return 'a-random-per-install-development-token-secret';
  throw new Error(`no file ${path}`);
};

function metricsProblems(env: NodeJS.ProcessEnv): string[] {
  try {
    loadConfig(env, noFiles);
    return [];
  } catch (error) {
    if (error instanceof ConfigError) return error.problems.filter((p) => p.startsWith('METRICS'));
    throw error;
  }
}

const PRODUCTION = {
  NODE_ENV: 'production',
  TRUST_PROXY: '10.0.0.1',
  AUTH_JWKS_URL: 'https://idp.example/jwks',
  AUDIT_ANCHOR_KEY_FILE: '/keys/anchor.pem',
  REDIS_URL: 'redis://127.0.0.1:6379',
  MONGODB_URI: 'mongodb://127.0.0.1:27017/billing',
  KMS_PROVIDER: 'kmip',
  KMIP_ENDPOINT: 'kmip.internal:5696',
};

describe('metrics settings', () => {
  it('leaves the port to the process kind unless METRICS_PORT says: a port, 0 (a free one) or off', () => {
    expect(loadConfig({}, noFiles).metrics).toMatchObject({ host: '127.0.0.1', port: undefined, gaugeCacheMs: 15_000 });
    expect(loadConfig({ METRICS_PORT: '0' }, noFiles).metrics.port).toBe(0);
    expect(loadConfig({ METRICS_PORT: '9500' }, noFiles).metrics.port).toBe(9500);
    expect(loadConfig({ METRICS_PORT: 'off' }, noFiles).metrics.port).toBe('off');
    expect(metricsProblems({ METRICS_PORT: 'nine' })).toEqual(['METRICS_PORT: must be a port (0: a free one) or off']);
  });

  it('in production, a metrics listener other hosts can reach needs a bearer token', () => {
    expect(metricsProblems({ ...PRODUCTION, METRICS_HOST: '0.0.0.0' })).toEqual([
      'METRICS_BEARER_TOKEN: required in production when METRICS_HOST (0.0.0.0) is not loopback (or set METRICS_PORT=off)',
    ]);
    expect(metricsProblems({ ...PRODUCTION, METRICS_HOST: '127.0.0.1.attacker.example' })).toHaveLength(1);
    expect(metricsProblems({ ...PRODUCTION, METRICS_HOST: '0.0.0.0', METRICS_BEARER_TOKEN: 'x'.repeat(40) })).toEqual(
      [],
    );
    expect(metricsProblems({ ...PRODUCTION, METRICS_HOST: '0.0.0.0', METRICS_PORT: 'off' })).toEqual([]);
    expect(metricsProblems({ ...PRODUCTION })).toEqual([]);
    expect(metricsProblems({ METRICS_HOST: '0.0.0.0' })).toEqual([]);
  });
});
