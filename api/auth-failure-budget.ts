import { isIPv6 } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../platform/redis';
import { ApiError } from './errors';

/**
 * The source a budget is kept for: an IPv4 address as it is (a v4-mapped IPv6 one too), an IPv6 address by its /64,
 * the smallest block one subscriber is usually given — counting single IPv6 addresses would let one host rotate
 * through 2^64 of them.
 */
export function budgetSource(ip: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.toLowerCase().split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((group) => group.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/**
 * A small per-source budget for failed authentication (bad or missing bearer tokens, forged webhook signatures),
 * apart from the general per-source limit: a source that spends it gets 429 until the minute ends, before any
 * signature is checked again. Counted in Redis so every api process shares it; if Redis cannot count, requests go
 * on (the general limits still stand): an outage of the counter must not take the API down.
 */
export function createAuthFailureBudget(redis: RedisClient, keyPrefix: string, perMinute: number) {
  const keyOf = (ip: string, minute: number) => `${keyPrefix}:auth-failures:${minute}:${budgetSource(ip)}`;
  return {
    /** Seconds until the source may try again, or undefined while it has budget left. */
    async retryAfter(ip: string): Promise<number | undefined> {
      const now = Date.now();
      const minute = Math.floor(now / 60_000);
      const spent = Number((await redis.get(keyOf(ip, minute)).catch(() => null)) ?? 0);
      return spent >= perMinute ? Math.max(1, Math.ceil(((minute + 1) * 60_000 - now) / 1000)) : undefined;
    },
    async record(ip: string): Promise<void> {
      const key = keyOf(ip, Math.floor(Date.now() / 60_000));
      await redis
        .multi()
        .incr(key)
        .expire(key, 120)
        .exec()
        .catch(() => undefined);
    },
  };
}

export type AuthFailureBudget = ReturnType<typeof createAuthFailureBudget>;

/** 429 with Retry-After for a source that spent its failed-authentication budget this minute. */
export async function refuseSpentSource(
  budget: AuthFailureBudget,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<void> {
  const retryAfter = await budget.retryAfter(request.ip);
  if (retryAfter === undefined) return;
  void reply.header('retry-after', String(retryAfter));
  throw new ApiError(429, 'auth_rate_limited', `too many failed authentications; retry after ${retryAfter} s`);
}
