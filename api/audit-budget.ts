import type { RedisClient } from '../platform/redis';

/** Audited per source address (and per kind, trail and reason) each minute; beyond that, only logged. */
export const AUDITED_PER_SOURCE_PER_MINUTE = 20;
/** Audited per trail (and per kind and reason) each minute, whatever the sources: rotating addresses gain nothing. */
export const AUDITED_PER_TRAIL_PER_MINUTE = 200;

/**
 * Bounds how many audit events unauthenticated traffic (invalid tokens, forged webhooks) can write: a flood is
 * refused as usual but audited only up to the bounds, and logged beyond them. If Redis cannot count, the event is
 * audited: the bound protects the trail, it must not hide an attack.
 */
export function createAuditBudget(redis: RedisClient, keyPrefix: string) {
  return async function withinAuditBudget(kind: string, trail: string, reason: string, source: string) {
    const minute = Math.floor(Date.now() / 60_000);
    const base = `${keyPrefix}:audit-budget:${minute}:${kind}:${trail}:${reason}`;
    const counts = await redis
      .multi()
      .incr(`${base}:source:${source}`)
      .expire(`${base}:source:${source}`, 120)
      .incr(base)
      .expire(base, 120)
      .exec()
      .then((results) => ({ source: Number(results?.[0]?.[1] ?? 0), trail: Number(results?.[2]?.[1] ?? 0) }))
      .catch(() => ({ source: 0, trail: 0 }));
    return {
      audit: counts.source <= AUDITED_PER_SOURCE_PER_MINUTE && counts.trail <= AUDITED_PER_TRAIL_PER_MINUTE,
      counts,
    };
  };
}

export type AuditBudget = ReturnType<typeof createAuditBudget>;
