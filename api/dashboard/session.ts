import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { RedisClient } from '../../platform/redis';
import { z } from 'zod';
import { PLATFORM_ROLES } from '../../domain/access-policy';
import { opaqueId } from '../../domain/audit-event';
import { dashboardSessionKeys, revokeDashboardSessions } from '../../platform/dashboard-sessions';

/**
 * Dashboard sessions, kept in Redis (under the deployment's queue prefix) so any api process serves them and
 * signing out ends them everywhere. The cookie holds a random token; Redis holds only its SHA-256, so a copy of
 * Redis lets no one in. Idle timeout (automatic logoff): the key expires after `idleSeconds` without use, and use
 * renews it; a session also ends `maxSeconds` after sign-in whatever its use. A subject has one session at a time.
 */
const sessionSchema = z.object({
  subject: opaqueId,
  role: z.enum(PLATFORM_ROLES),
  /** The CSRF token every state-changing request must echo (header X-XSRF-TOKEN, or the form's `csrf`). */
  csrf: z.string().min(32),
  createdAt: z.number(),
  lastActiveAt: z.number(),
  /**
   * The reads seen since the page was last loaded: the board polls what it shows every few seconds, and a poll is
   * the page, not the person. A read not in this list (another queue, a job) is use; a repeat is not.
   */
  views: z.array(z.string()).max(64),
});
export type DashboardSession = z.infer<typeof sessionSchema>;

export interface SessionStore {
  create(subject: string, role: DashboardSession['role']): Promise<{ token: string; session: DashboardSession }>;
  /** The live session of a cookie token, or undefined (unknown, idle too long, or past its maximum age). */
  find(token: string): Promise<DashboardSession | undefined>;
  /**
   * Records use of a session: its idle timer starts again. `view` is the new read that was use; without one (a page
   * load, an action) the list of reads seen starts afresh.
   */
  touch(token: string, session: DashboardSession, view?: string): Promise<void>;
  destroy(token: string): Promise<void>;
  /** Ends every session of a subject (signing in again does, and `hipaa-billing dashboard-sessions revoke`). */
  revokeSubject(subject: string): Promise<boolean>;
  /**
   * Marks a sign-in token used (by its `jti`) until it expires: false when it was used already, so a token copied from
   * a log or a browser history signs no one in a second time.
   */
  claimSignInToken(tokenId: string, expiresAtMs: number): Promise<boolean>;
}

const MAX_VIEWS = 64;

function randomToken(): string {
  return randomBytes(32).toString('base64url');
}

export function sameSecret(given: string | undefined, expected: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createSessionStore(
  redis: RedisClient,
  prefix: string,
  limits: { idleSeconds: number; maxSeconds: number },
  now: () => number = Date.now,
): SessionStore {
  const keys = dashboardSessionKeys(prefix);
  const { sha256 } = keys;
  const keyOfHash = keys.session;
  const keyOf = (token: string) => keyOfHash(sha256(token));
  /** The subject's one live session (its token's hash): a new sign-in replaces it, and ends it. */
  const subjectKey = keys.subject;
  const idleMs = limits.idleSeconds * 1000;

  async function save(token: string, session: DashboardSession): Promise<void> {
    // Never beyond the session's maximum age, even when in use.
    const left = Math.min(idleMs, session.createdAt + limits.maxSeconds * 1000 - now());
    if (left <= 0) return void (await redis.del(keyOf(token)));
    await redis.set(keyOf(token), JSON.stringify(session), 'PX', left);
  }

  return {
    async create(subject, role) {
      const token = randomToken();
      const at = now();
      const session: DashboardSession = {
        subject,
        role,
        csrf: randomToken(),
        createdAt: at,
        lastActiveAt: at,
        views: [],
      };
      await save(token, session);
      // One session per subject: signing in again ends the one before (on any api process, any browser).
      const previous = await redis.set(subjectKey(subject), sha256(token), 'PX', limits.maxSeconds * 1000, 'GET');
      if (previous && previous !== sha256(token)) await redis.del(keyOfHash(previous));
      return { token, session };
    },

    async find(token) {
      if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return undefined;
      const stored = await redis.get(keyOf(token));
      if (!stored) return undefined;
      const parsed = sessionSchema.safeParse(JSON.parse(stored));
      if (!parsed.success) return undefined;
      const session = parsed.data;
      const at = now();
      // Redis expires the key; these checks make the limits exact whatever the Redis clock does.
      if (at - session.lastActiveAt >= idleMs || at - session.createdAt >= limits.maxSeconds * 1000) {
        await redis.del(keyOf(token));
        return undefined;
      }
      return session;
    },

    async touch(token, session, view) {
      const views = !view ? [] : session.views.length >= MAX_VIEWS ? [view] : [...session.views, view];
      await save(token, { ...session, lastActiveAt: now(), views });
    },

    async destroy(token) {
      await redis.del(keyOf(token));
    },

    revokeSubject: (subject) => revokeDashboardSessions(redis, prefix, subject),

    async claimSignInToken(tokenId, expiresAtMs) {
      const ttl = Math.max(1_000, expiresAtMs - now() + 60_000);
      return (await redis.set(keys.tokenUsed(tokenId), '1', 'PX', ttl, 'NX')) === 'OK';
    },
  };
}
