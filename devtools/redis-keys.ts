import { redisMasters, type RedisClient } from '../platform/redis';

/**
 * Deletes every key under `prefix` (a queue prefix): SCAN + UNLINK, never KEYS. How tests and benchmarks clean up.
 * On a Redis Cluster each master is scanned (SCAN sees one node's keys), and keys are unlinked one by one there, so a
 * prefix that is not a hash tag cannot make a cross-slot command.
 */
export async function deleteKeysByPrefix(redis: RedisClient, prefix: string): Promise<number> {
  let deleted = 0;
  for (const node of redisMasters(redis)) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${escapeGlob(prefix)}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.unlink(key);
      for (const [error, count] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        deleted += Number(count);
      }
    } while (cursor !== '0');
  }
  return deleted;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
