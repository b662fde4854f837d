import { createSecretKey, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import type { Permission, Role } from '../domain/access-policy';
import type { AppConfig } from '../platform/config';

/** Development tokens only: production verifies RS256/ES256 tokens from the identity provider. */
export async function mintDevToken(
  config: AppConfig,
  claims: { companyId: string; roles: Role[]; permissions?: Permission[]; subject?: string; officeIds?: string[] },
  ttlSeconds = 900,
): Promise<string> {
  if (!config.auth.hs256Secret)
    throw new Error('tokens are verified by public key here; mint them with your identity provider');
  const isService = claims.roles.includes('service');
  return new SignJWT({
    company_id: claims.companyId,
    roles: claims.roles,
    sub_type: isService ? 'service' : 'user',
    office_ids: claims.officeIds ?? [],
    permissions: claims.permissions ?? (isService ? ['payments:create', 'payments:read'] : []),
  })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(claims.subject ?? (isService ? 'svc-dev-app' : 'usr-dev'))
    .setIssuer(config.auth.issuer)
    .setAudience(config.auth.audience)
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(createSecretKey(Buffer.from(config.auth.hs256Secret)));
}
