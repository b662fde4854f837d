import { createHash } from 'node:crypto';
import type { RedisClient } from './redis';

/**
 * Where dashboard sessions live in Redis (under the deployment's queue prefix), shared by the api that keeps them
 * (api/dashboard/session.ts) and the CLI that revokes them. Keys hold SHA-256s, never a token or a subject as given.
 */
export function dashboardSessionKeys(prefix: string) {
  const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');
  return {
    sha256,
    /** A session, by its token's hash. */
    session: (tokenHash: string) => `${prefix}:dashboard-session:${tokenHash}`,
    /** A subject's one live session: its token's hash. */
    subject: (subject: string) => `${prefix}:dashboard-subject:${sha256(subject)}`,
    /** A sign-in token (its jti) already used. */
    tokenUsed: (tokenId: string) => `${prefix}:dashboard-token-used:${sha256(tokenId)}`,
  };
}

/** Ends the subject's dashboard session, on every api process at once. True when there was one. */
export async function revokeDashboardSessions(redis: RedisClient, prefix: string, subject: string): Promise<boolean> {
  const keys = dashboardSessionKeys(prefix);
  const current = await redis.getdel(keys.subject(subject));
  return current ? (await redis.del(keys.session(current))) > 0 : false;
}
