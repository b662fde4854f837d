import { createSecretKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { AuthenticationError, createAuthenticator, VERIFIED_TOKEN_TTL_MS } from '../../api/auth';

const secret = 'a-test-secret-of-at-least-thirty-two-characters';
const config = {
  issuer: 'https://idp.example',
  audience: 'billing-api',
  maxTokenAgeSeconds: 900,
  emergencyWindowSeconds: 600,
  hs256Secret: secret,
};
const key = createSecretKey(Buffer.from(secret));

function token(expiresIn: string, roles = ['billing_manager']): Promise<string> {
  return new SignJWT({ company_id: 'cmp-1', roles, sub_type: 'user' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('usr-1')
    .setIssuer('https://idp.example')
    .setAudience('billing-api')
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

async function reasonOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(AuthenticationError);
    return (error as AuthenticationError).reason;
  }
}

describe('verified tokens served from the cache (issue 22)', () => {
  beforeEach(() => {
    jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] });
    jest.setSystemTime(new Date('2026-12-05T12:00:00Z'));
  });
  afterEach(() => jest.useRealTimers());

  it('answers a repeated token with the same principal, which no request can change', async () => {
    const authenticate = createAuthenticator(config);
    const bearer = `Bearer ${await token('5m')}`;
    const first = await authenticate(bearer);
    const second = await authenticate(bearer);
    expect(second).toBe(first);
    expect(Object.isFrozen(second)).toBe(true);
    expect(Object.isFrozen(second.roles)).toBe(true);
    expect(() => (second.roles as string[]).push('platform_admin')).toThrow(TypeError);
  });

  it('refuses a cached token once it expires, as an uncached one is refused', async () => {
    const authenticate = createAuthenticator(config, { cacheTtlMs: 10 * 60_000 });
    const bearer = `Bearer ${await token('20s')}`;
    await expect(authenticate(bearer)).resolves.toMatchObject({ subject: 'usr-1' });
    jest.setSystemTime(Date.now() + 26_000); // past exp and jose's 5 s clock tolerance
    expect(await reasonOf(authenticate(bearer))).toBe('token_expired');
  });

  it('refuses a cached token past the maximum age since issue', async () => {
    const authenticate = createAuthenticator({ ...config, maxTokenAgeSeconds: 20 }, { cacheTtlMs: 10 * 60_000 });
    const bearer = `Bearer ${await token('1h')}`;
    await expect(authenticate(bearer)).resolves.toMatchObject({ subject: 'usr-1' });
    jest.setSystemTime(Date.now() + 26_000);
    expect(await reasonOf(authenticate(bearer))).toBe('token_too_old');
  });

  it('verifies again after the TTL, and never lets a tampered token ride on a cached one', async () => {
    const authenticate = createAuthenticator(config);
    const signed = await token('1h');
    const first = await authenticate(`Bearer ${signed}`);
    const [head, , signature] = signed.split('.');
    const forgedClaims = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(signed.split('.')[1]!, 'base64url').toString()),
        roles: ['platform_admin'],
      }),
    ).toString('base64url');
    expect(await reasonOf(authenticate(`Bearer ${head}.${forgedClaims}.${signature}`))).toBe('token_signature_invalid');
    jest.setSystemTime(Date.now() + VERIFIED_TOKEN_TTL_MS + 1);
    const later = await authenticate(`Bearer ${signed}`);
    expect(later).not.toBe(first);
    expect(later).toEqual(first);
  });

  it('does not cache a refusal: a token refused for its type stays refused', async () => {
    const authenticate = createAuthenticator(config);
    const idToken = await new SignJWT({ company_id: 'cmp-1', roles: ['billing_manager'] })
      .setProtectedHeader({ alg: 'HS256', typ: 'id_token' })
      .setSubject('usr-1')
      .setIssuer('https://idp.example')
      .setAudience('billing-api')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(key);
    expect(await reasonOf(authenticate(`Bearer ${idToken}`))).toBe('token_type_refused');
    expect(await reasonOf(authenticate(`Bearer ${idToken}`))).toBe('token_type_refused');
  });

  it("runs the caller's check (the failed-authentication budget) before every token it verifies, and for none it serves from the cache", async () => {
    const authenticate = createAuthenticator(config);
    const checks: string[] = [];
    const check = (what: string) => async () => void checks.push(what);
    const bearer = `Bearer ${await token('5m')}`;
    await authenticate(bearer, check('first'));
    await authenticate(bearer, check('cached'));
    expect(await reasonOf(authenticate('Bearer not-a-jwt', check('invalid')))).toBe('token_invalid');
    expect(await reasonOf(authenticate('Basic dXNlcjpwdw==', check('malformed')))).toBe('authorization_malformed');
    expect(await reasonOf(authenticate(undefined, check('missing')))).toBe('authorization_missing');
    expect(checks).toEqual(['first', 'invalid', 'malformed', 'missing']);
    // A refusal there stops the token from being checked at all.
    const refusal = new Error('source spent its budget');
    await expect(authenticate(`Bearer ${await token('6m')}`, () => Promise.reject(refusal))).rejects.toBe(refusal);
  });

  it('says a token was verified recently only while its principal is served from the cache', async () => {
    const authenticate = createAuthenticator(config);
    const signed = await token('1h');
    const bearer = `Bearer ${signed}`;
    expect(authenticate.verifiedRecently(bearer)).toBe(false);
    await authenticate(bearer);
    expect(authenticate.verifiedRecently(bearer)).toBe(true);
    // Not a token that failed, a tampered copy of the cached one, another scheme or no header at all.
    expect(await reasonOf(authenticate('Bearer not-a-jwt'))).toBe('token_invalid');
    expect(authenticate.verifiedRecently('Bearer not-a-jwt')).toBe(false);
    expect(authenticate.verifiedRecently(`Bearer ${signed.slice(0, -2)}xx`)).toBe(false);
    expect(authenticate.verifiedRecently(`Basic ${signed}`)).toBe(false);
    expect(authenticate.verifiedRecently(undefined)).toBe(false);
    jest.setSystemTime(Date.now() + VERIFIED_TOKEN_TTL_MS + 1);
    expect(authenticate.verifiedRecently(bearer)).toBe(false);
    // With the cache turned off nothing is.
    const uncached = createAuthenticator(config, { cacheEntries: 0 });
    await uncached(bearer);
    expect(uncached.verifiedRecently(bearer)).toBe(false);
  });
});
