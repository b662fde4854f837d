import { decodeTime, isValid } from 'ulid';
import { ulid } from '../../platform/ids';

describe('ulid from pooled random bytes', () => {
  it('makes valid, distinct ULIDs that carry the time they were made', () => {
    const before = Date.now();
    const ids = Array.from({ length: 10_000 }, () => ulid());
    const after = Date.now();
    expect(ids.every((id) => isValid(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of [ids[0]!, ids.at(-1)!]) {
      expect(decodeTime(id)).toBeGreaterThanOrEqual(before);
      expect(decodeTime(id)).toBeLessThanOrEqual(after);
    }
  });

  it('spreads the random part over the whole alphabet (more than one pool refill)', () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 20_000; i += 1) {
      for (const char of ulid().slice(10)) seen.set(char, (seen.get(char) ?? 0) + 1);
    }
    expect(seen.size).toBe(32);
    const counts = [...seen.values()];
    // 320,000 characters over 32: each near 10,000; a stuck or biased byte source is far off.
    expect(Math.min(...counts)).toBeGreaterThan(9_000);
    expect(Math.max(...counts)).toBeLessThan(11_000);
  });
});
