import { createHash, createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { PERMISSIONS, ROLES, type Principal } from '../domain/access-policy';
import type { AuthConfig } from '../platform/config';
import { deepFreeze } from '../platform/freeze';
import { opaqueId } from '../domain/audit-event';
import { scopeIdSchema } from './validation';

export class AuthenticationError extends Error {
  constructor(public readonly reason: string) {
    super(`authentication failed: ${reason}`);
    this.name = 'AuthenticationError';
  }
}

const claimsSchema = z.object({
  sub: opaqueId,
  iat: z.number(),
  exp: z.number(),
  jti: z.string().min(1).max(200).optional(),
  sub_type: z.enum(['user', 'service']).default('user'),
  company_id: scopeIdSchema,
  roles: z.array(z.enum(ROLES)).min(1),
  office_ids: z.array(scopeIdSchema).default([]),
  permissions: z.array(z.enum(PERMISSIONS)).default([]),
});

/**
 * Verifies a bearer token. `beforeVerifying` runs only when the token is not one this process verified within
 * the cache's TTL, before anything of it is checked: a caller's refusal (the failed-authentication budget) goes there,
 * so a token already verified costs no Redis round trip.
 */
export type Authenticator = ((
  authorizationHeader: string | undefined,
  beforeVerifying?: () => Promise<void>,
) => Promise<Principal>) & {
  /**
   * Whether the header's token is one this process verified within the cache's TTL (so serving it costs no
   * signature check): the limits that keep unverified tokens cheap need not count it.
   */
  verifiedRecently(authorizationHeader: string | undefined): boolean;
};

type VerificationKey = { get: JWTVerifyGetKey; algorithms: string[] };

function staticKey(key: KeyObject): JWTVerifyGetKey {
  return async () => key;
}

/** RS256/ES256 from a JWKS URL or a public key file; HS256 (development only, see config) from a shared secret. */
function verificationKey(config: AuthConfig): VerificationKey {
  if (config.jwksUrl) return { get: createRemoteJWKSet(new URL(config.jwksUrl)), algorithms: ['RS256', 'ES256'] };
  if (config.publicKeyPem)
    return { get: staticKey(createPublicKey(config.publicKeyPem)), algorithms: ['RS256', 'ES256'] };
  if (config.hs256Secret) {
    return { get: staticKey(createSecretKey(Buffer.from(config.hs256Secret))), algorithms: ['HS256'] };
  }
  throw new Error('no token verification key configured');
}

function reasonFor(error: unknown): string {
  if (error instanceof joseErrors.JWTExpired) return error.claim === 'iat' ? 'token_too_old' : 'token_expired';
  if (error instanceof joseErrors.JWTClaimValidationFailed) return `token_claim_invalid_${error.claim}`;
  if (error instanceof joseErrors.JOSEAlgNotAllowed) return 'token_algorithm_not_allowed';
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'token_signature_invalid';
  return 'token_invalid';
}

/**
 * Verifies a bearer JWT: signature with an allowed algorithm (never `none`),
 * issuer, audience, expiry, not-before, and a maximum age since issue
 * (automatic logoff), then turns its claims into a Principal.
 */
/** The `typ` headers accepted (RFC 9068's `at+jwt`, and plain `JWT`); a token without one is judged by its claims. */
const ACCESS_TOKEN_TYPES: ReadonlySet<string> = new Set(['jwt', 'at+jwt', 'application/at+jwt']);

/**
 * How long a verified token's principal may be served without verifying the token again. Short on purpose: a key
 * removed from the JWKS stops being honoured within this (jose's own JWKS cache keeps a fetched key set for 10
 * minutes), and an entry never outlives the token's `exp` or its maximum age since `iat`.
 */
export const VERIFIED_TOKEN_TTL_MS = 30_000;
/** Bounds the cache's memory whatever the number of distinct tokens (each entry is a digest and a principal). */
export const VERIFIED_TOKEN_CACHE_ENTRIES = 5_000;

type CachedPrincipal = { principal: Principal; validUntilMs: number };

/**
 * Principals of tokens that verified, by the SHA-256 of the token (the cache holds no bearer credential), so an
 * upstream service that sends the same token with each request pays for the signature check and the claims' parse
 * once per TTL. Failures are never cached: every invalid token is checked in full. Oldest entries go first when full.
 */
function verifiedTokenCache(maxEntries: number, ttlMs: number, now: () => number) {
  const entries = new Map<string, CachedPrincipal>();
  return {
    get(digest: string): Principal | undefined {
      const entry = entries.get(digest);
      if (!entry) return undefined;
      if (now() < entry.validUntilMs) return entry.principal;
      entries.delete(digest);
      return undefined;
    },
    set(digest: string, principal: Principal, tokenValidUntilMs: number): void {
      const validUntilMs = Math.min(tokenValidUntilMs, now() + ttlMs);
      if (validUntilMs <= now()) return;
      entries.delete(digest);
      if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
      entries.set(digest, { principal, validUntilMs });
    },
  };
}

export interface AuthenticatorOptions {
  /** 0 turns the verified-token cache off. */
  cacheEntries?: number;
  cacheTtlMs?: number;
  now?: () => number;
}

export function createAuthenticator(config: AuthConfig, options: AuthenticatorOptions = {}): Authenticator {
  const { get, algorithms } = verificationKey(config);
  const now = options.now ?? Date.now;
  const cacheEntries = options.cacheEntries ?? VERIFIED_TOKEN_CACHE_ENTRIES;
  const cache =
    cacheEntries > 0 ? verifiedTokenCache(cacheEntries, options.cacheTtlMs ?? VERIFIED_TOKEN_TTL_MS, now) : undefined;
  const bearer = (header: string | undefined) => /^Bearer ([A-Za-z0-9_\-.]+)$/.exec(header ?? '')?.[1];
  const digestOf = (token: string | undefined) =>
    token && cache ? createHash('sha256').update(token).digest('base64') : '';
  const authenticate = async (header: string | undefined, beforeVerifying?: () => Promise<void>) => {
    const token = bearer(header);
    const digest = digestOf(token);
    const cached = digest ? cache?.get(digest) : undefined;
    if (cached) return cached;
    await beforeVerifying?.();
    if (!token) throw new AuthenticationError(header ? 'authorization_malformed' : 'authorization_missing');
    let payload: JWTPayload;
    let typ: string | undefined;
    try {
      ({
        payload,
        protectedHeader: { typ },
      } = await jwtVerify(token, get, {
        issuer: config.issuer,
        audience: config.audience,
        algorithms,
        maxTokenAge: config.maxTokenAgeSeconds,
        requiredClaims: ['exp', 'iat', 'sub'],
        clockTolerance: 5,
      }));
    } catch (error) {
      throw new AuthenticationError(reasonFor(error));
    }
    // An access token, or a plain JWT; never another kind the identity provider signs with the same keys (an ID
    // token, a logout token) replayed as one.
    if (typ !== undefined && !ACCESS_TOKEN_TYPES.has(typ.toLowerCase())) {
      throw new AuthenticationError('token_type_refused');
    }
    const claims = claimsSchema.safeParse(payload);
    if (!claims.success) throw new AuthenticationError('token_claims_invalid');
    // Frozen: a cached principal is shared by the requests that present its token, and none of them may change it.
    const principal: Principal = deepFreeze({
      subject: claims.data.sub,
      subjectType: claims.data.sub_type,
      companyId: claims.data.company_id,
      roles: claims.data.roles,
      officeIds: claims.data.office_ids,
      permissions: claims.data.permissions,
      issuedAt: claims.data.iat,
      expiresAt: claims.data.exp,
      ...(claims.data.jti ? { tokenId: claims.data.jti } : {}),
    });
    // Served from the cache only while jose would still accept it without its clock tolerance: before `exp` and
    // within the maximum age since `iat` (nbf has passed: it verified now).
    cache?.set(digest, principal, Math.min(claims.data.exp, claims.data.iat + config.maxTokenAgeSeconds) * 1000);
    return principal;
  };
  return Object.assign(authenticate, {
    verifiedRecently(header: string | undefined): boolean {
      const digest = digestOf(bearer(header));
      return digest !== '' && cache?.get(digest) !== undefined;
    },
  });
}
