import { createSecretKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { AuthenticationError, createAuthenticator } from '../../api/auth';

const secret = 'a-test-secret-of-at-least-thirty-two-characters';
const authenticate = createAuthenticator({
  issuer: 'https://idp.example',
  audience: 'billing-api',
  maxTokenAgeSeconds: 900,
  emergencyWindowSeconds: 600,
  hs256Secret: secret,
});

function token(typ?: string): Promise<string> {
  return new SignJWT({ company_id: 'cmp-1', roles: ['billing_manager'], sub_type: 'user' })
    .setProtectedHeader({ alg: 'HS256', ...(typ ? { typ } : {}) })
    .setSubject('usr-1')
    .setIssuer('https://idp.example')
    .setAudience('billing-api')
    .setIssuedAt()
    .setExpirationTime('5m')
    .sign(createSecretKey(Buffer.from(secret)));
}

describe('the token type an identity provider sets (issue 20)', () => {
  it.each([undefined, 'JWT', 'at+jwt', 'application/at+jwt'])('accepts typ %s', async (typ) => {
    await expect(authenticate(`Bearer ${await token(typ)}`)).resolves.toMatchObject({ subject: 'usr-1' });
  });

  it.each(['id_token', 'logout+jwt', 'secevent+jwt'])(
    'refuses typ %s: another kind of token replayed as access',
    async (typ) => {
      const refused = authenticate(`Bearer ${await token(typ)}`);
      await expect(refused).rejects.toBeInstanceOf(AuthenticationError);
      await expect(refused).rejects.toMatchObject({ reason: 'token_type_refused' });
    },
  );
});
