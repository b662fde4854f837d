import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { PERMISSIONS, ROLES, type Principal } from '../domain/access-policy';
import type { AuthConfig } from '../platform/config';

export class AuthenticationError extends Error {
  constructor(public readonly reason: string) {
    super(`authentication failed: ${reason}`);
    this.name = 'AuthenticationError';
  }
}

const subjectId = z.string().regex(/^[A-Za-z0-9_.@|+-]{1,120}$/);

const claimsSchema = z.object({
  sub: subjectId,
  sub_type: z.enum(['user', 'service']).default('user'),
  company_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  roles: z.array(z.enum(ROLES)).min(1),
  office_ids: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)).default([]),
  permissions: z.array(z.enum(PERMISSIONS)).default([]),
});

export type Authenticator = (authorizationHeader: string | undefined) => Promise<Principal>;

function verificationKey(config: AuthConfig): { key: KeyObject | JWTVerifyGetKey; algorithms: string[] } {
  if (config.jwksUrl) return { key: createRemoteJWKSet(new URL(config.jwksUrl)), algorithms: ['RS256', 'ES256'] };
  if (config.publicKeyPem) return { key: createPublicKey(config.publicKeyPem), algorithms: ['RS256', 'ES256'] };
  if (config.hs256Secret) return { key: createSecretKey(Buffer.from(config.hs256Secret)), algorithms: ['HS256'] };
  throw new Error('no token verification key configured');
}

function reasonFor(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return 'token_expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `token_claim_invalid_${error.claim}`;
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'token_algorithm_not_allowed';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'token_signature_invalid';
  return 'token_invalid';
}

/** Verifies a bearer JWT (issuer, audience, expiry, not-before, signature) and turns its claims into a Principal. */
export function createAuthenticator(config: AuthConfig): Authenticator {
  const { key, algorithms } = verificationKey(config);
  return async (header) => {
    const match = /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header ?? '');
    if (!match?.[1]) throw new AuthenticationError(header ? 'authorization_malformed' : 'authorization_missing');
    let payload: JWTPayload;
    try {
      const verified =
        typeof (key as JWTVerifyGetKey) === 'function'
          ? await jwtVerify(match[1], key as JWTVerifyGetKey, {
              issuer: config.issuer,
              audience: config.audience,
              algorithms,
              requiredClaims: ['exp'],
            })
          : await jwtVerify(match[1], key as KeyObject, {
              issuer: config.issuer,
              audience: config.audience,
              algorithms,
              requiredClaims: ['exp'],
            });
      payload = verified.payload;
    } catch (error) {
      throw new AuthenticationError(reasonFor(error));
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw new AuthenticationError('token_claims_invalid');
    return {
      subject: claims.data.sub,
      subjectType: claims.data.sub_type,
      companyId: claims.data.company_id,
      roles: claims.data.roles,
      officeIds: claims.data.office_ids,
      permissions: claims.data.permissions,
    };
  };
}
