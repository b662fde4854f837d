import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, createServer as createTlsServer, type SecureVersion } from 'node:tls';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import { createServer as createHttpServer } from 'node:http';
import { startApi, type RunningApi } from '../../api/main';
import { createCompany, devAttestation } from '../../models/companies';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { rsaKeyPair, selfSignedCertificate } from '../support/tls';

let system: InProcessSystem;
let companyId: string;
const extraApis: RunningApi[] = [];

async function extraApi(overrides: Record<string, string>): Promise<RunningApi> {
  const api = await startApi(configWith(system.ctx, { PORT: '0', ...overrides }), system.ctx.logger, system.ctx.db);
  extraApis.push(api);
  return api;
}

function paymentsUrl(base: string) {
  return `${base}/v1/companies/${companyId}/payments`;
}

beforeAll(async () => {
  system = await startInProcessSystem('secure_ingress');
  companyId = await createCompany(system.ctx.db, {
    name: 'Bayview Cardiology',
    stripeSecretKey: 'sk_test_bayview',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  for (const api of extraApis) await api.stop();
  await system.close();
});

describe('transport: TLS 1.2+ only', () => {
  const cert = selfSignedCertificate();
  let api: RunningApi;
  let port: number;
  beforeAll(async () => {
    api = await extraApi({ TLS_CERT_FILE: cert.certFile, TLS_KEY_FILE: cert.keyFile });
    port = Number(new URL(api.url).port);
  });

  function handshake(targetPort: number, version: SecureVersion): Promise<string> {
    return new Promise((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port: targetPort,
        minVersion: version,
        maxVersion: version,
        // Let this client offer old protocols at all; the server must be the one that says no.
        ciphers: 'DEFAULT@SECLEVEL=0',
        rejectUnauthorized: false,
      });
      socket.once('secureConnect', () => {
        const negotiated = socket.getProtocol() ?? 'unknown';
        socket.destroy();
        resolve(negotiated);
      });
      socket.once('error', () => resolve('refused'));
    });
  }

  it('accepts TLS 1.2 and 1.3', async () => {
    expect(await handshake(port, 'TLSv1.2')).toBe('TLSv1.2');
    expect(await handshake(port, 'TLSv1.3')).toBe('TLSv1.3');
  });

  it('refuses TLS 1.0 and 1.1 (while a permissive server would have accepted this client)', async () => {
    expect(await handshake(port, 'TLSv1')).toBe('refused');
    expect(await handshake(port, 'TLSv1.1')).toBe('refused');

    // Control: the same client does reach TLS 1.0/1.1 with a server that allows them, so the refusal above is the api's.
    const permissive = createTlsServer({
      key: readFileSync(cert.keyFile),
      cert: readFileSync(cert.certFile),
      minVersion: 'TLSv1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    await new Promise<void>((resolve) => permissive.listen(0, '127.0.0.1', resolve));
    const controlPort = (permissive.address() as { port: number }).port;
    try {
      expect(await handshake(controlPort, 'TLSv1')).toBe('TLSv1');
      expect(await handshake(controlPort, 'TLSv1.1')).toBe('TLSv1.1');
    } finally {
      permissive.close();
    }
  });

  it('sends HSTS over https', async () => {
    const headers = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const req = httpsRequest(`${api.url}/healthz`, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.headers);
      });
      req.once('error', reject);
      req.end();
    });
    expect(headers['strict-transport-security']).toBe('max-age=31536000; includeSubDomains');
  });
});

describe('behind a TLS-terminating proxy', () => {
  it('refuses requests the proxy did not receive over https', async () => {
    const api = await extraApi({ TRUST_PROXY: 'true' });
    const plain = await fetch(paymentsUrl(api.url), { method: 'POST', headers: { 'x-forwarded-proto': 'http' } });
    expect(plain.status).toBe(403);
    expect(((await plain.json()) as any).error.code).toBe('https_required');
    const viaHttps = await fetch(paymentsUrl(api.url), { method: 'POST', headers: { 'x-forwarded-proto': 'https' } });
    expect(viaHttps.status).toBe(401); // past the transport check, now it needs a token
    expect(viaHttps.headers.get('strict-transport-security')).toContain('max-age=');
  });
});

describe('token attacks are refused with 401 and a reason, and audited', () => {
  let hsKey: KeyObject;
  beforeAll(() => {
    hsKey = createSecretKey(Buffer.from(system.ctx.config.auth.hs256Secret!));
  });

  function claims(overrides: Record<string, unknown> = {}) {
    return { company_id: companyId, roles: ['company_admin'], ...overrides };
  }
  function sign(
    key: KeyObject,
    options: {
      alg?: string;
      iat?: number;
      exp?: number | string;
      nbf?: number;
      aud?: string;
      iss?: string;
      sub?: string;
    } = {},
    extra: Record<string, unknown> = {},
  ) {
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT(claims(extra))
      .setProtectedHeader({ alg: options.alg ?? 'HS256' })
      .setSubject(options.sub ?? 'usr-attacker')
      .setIssuer(options.iss ?? system.ctx.config.auth.issuer)
      .setAudience(options.aud ?? system.ctx.config.auth.audience)
      .setIssuedAt(options.iat ?? now)
      .setExpirationTime(options.exp ?? now + 300);
    if (options.nbf) jwt.setNotBefore(options.nbf);
    return jwt.sign(key);
  }

  async function attempt(token: string) {
    const response = await fetch(paymentsUrl(system.url), {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'idempotency-key': 'attack-0001',
      },
      body: '{}',
    });
    return { status: response.status, code: ((await response.json()) as any).error.code as string };
  }

  const now = () => Math.floor(Date.now() / 1000);

  it.each([
    ['expired', () => sign(hsKey, { iat: now() - 120, exp: now() - 60 }), 'token_expired'],
    [
      'older than the maximum token age',
      () => sign(hsKey, { iat: now() - 16 * 60, exp: now() + 3600 }),
      'token_too_old',
    ],
    ['not valid yet', () => sign(hsKey, { nbf: now() + 600 }), 'token_claim_invalid_nbf'],
    ['for another audience', () => sign(hsKey, { aud: 'some-other-api' }), 'token_claim_invalid_aud'],
    ['from another issuer', () => sign(hsKey, { iss: 'https://evil.example' }), 'token_claim_invalid_iss'],
    ['signed with another secret', () => sign(createSecretKey(Buffer.alloc(32, 7))), 'token_signature_invalid'],
    [
      'alg none (unsigned)',
      async () =>
        new UnsecuredJWT(claims())
          .setSubject('usr-x')
          .setIssuedAt()
          .setExpirationTime('5m')
          .setIssuer(system.ctx.config.auth.issuer)
          .setAudience(system.ctx.config.auth.audience)
          .encode(),
      'token_algorithm_not_allowed',
    ],
    ['with an unknown role', () => sign(hsKey, {}, { roles: ['superuser'] }), 'token_claims_invalid'],
    ['without a company', () => sign(hsKey, {}, { company_id: undefined }), 'token_claims_invalid'],
  ])('%s → 401', async (_label, makeToken, reason) => {
    const before = await system.ctx.db.models.AuditEvent.countDocuments({ action: 'auth.failed', reason });
    expect(await attempt(await makeToken())).toEqual({ status: 401, code: reason });
    await waitFor(
      () => system.ctx.db.models.AuditEvent.countDocuments({ action: 'auth.failed', reason }),
      (count) => count === before + 1,
      { what: `auth.failed audit event for ${reason}` },
    );
    const event = await system.ctx.db.models.AuditEvent.findOne({ action: 'auth.failed', reason })
      .sort({ occurredAt: -1 })
      .lean();
    expect(event).toMatchObject({
      companyId: 'platform',
      resource: { type: 'company', id: companyId },
      outcome: 'denied',
      actor: { type: 'anonymous' },
      route: 'POST /v1/companies/:companyId/payments',
    });
  });

  it('verifies RS256 tokens with a configured public key, and refuses HS256 tokens there (algorithm confusion)', async () => {
    const { publicKeyFile, privateKey } = rsaKeyPair();
    const api = await extraApi({ AUTH_PUBLIC_KEY_FILE: publicKeyFile, AUTH_JWT_SECRET: '' });
    const rs256 = await sign(privateKey, { alg: 'RS256' });
    const ok = await fetch(paymentsUrl(api.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${rs256}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(ok.status).toBe(400); // authenticated; now the missing Idempotency-Key is the problem
    const confused = await sign(createSecretKey(readFileSync(publicKeyFile)), { alg: 'HS256' });
    const refused = await fetch(paymentsUrl(api.url), {
      method: 'POST',
      headers: { authorization: `Bearer ${confused}` },
    });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as any).error.code).toBe('token_algorithm_not_allowed');
  });
});

describe('tokens from an identity provider (JWKS)', () => {
  it('verifies ES256 tokens against keys published at a JWKS URL', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'idp-key-1', alg: 'ES256', use: 'sig' };
    const idp = createHttpServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => idp.listen(0, '127.0.0.1', resolve));
    try {
      const jwksUrl = `http://127.0.0.1:${(idp.address() as { port: number }).port}/.well-known/jwks.json`;
      const api = await extraApi({ AUTH_JWKS_URL: jwksUrl, AUTH_JWT_SECRET: '' });
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ company_id: companyId, roles: ['company_admin'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'idp-key-1' })
        .setSubject('usr-idp')
        .setIssuer(system.ctx.config.auth.issuer)
        .setAudience(system.ctx.config.auth.audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(privateKey);
      const accepted = await fetch(paymentsUrl(api.url), { headers: { authorization: `Bearer ${token}` } });
      expect(accepted.status).toBe(200);
      const other = await generateKeyPair('ES256');
      const forged = await new SignJWT({ company_id: companyId, roles: ['company_admin'] })
        .setProtectedHeader({ alg: 'ES256', kid: 'idp-key-1' })
        .setSubject('usr-forger')
        .setIssuer(system.ctx.config.auth.issuer)
        .setAudience(system.ctx.config.auth.audience)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(other.privateKey);
      const refused = await fetch(paymentsUrl(api.url), { headers: { authorization: `Bearer ${forged}` } });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as any).error.code).toBe('token_signature_invalid');
    } finally {
      idp.close();
    }
  });
});

describe('rate limiting per token', () => {
  it('answers 429 past the limit for that token only', async () => {
    const api = await extraApi({ RATE_LIMIT_PER_MINUTE: '3' });
    const busy = await system.token(companyId, ['company_admin'], { subject: 'usr-busy' });
    const calm = await system.token(companyId, ['company_admin'], { subject: 'usr-calm' });
    const hit = async (token: string) =>
      (
        await fetch(`${api.url}/v1/companies/${companyId}/payments/pay_00000000000000000000000000`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).status;
    const statuses = [];
    for (let i = 0; i < 4; i += 1) statuses.push(await hit(busy));
    expect(statuses).toEqual([404, 404, 404, 429]);
    expect(await hit(calm)).toBe(404);
  });
});
