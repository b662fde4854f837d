import prand from 'pure-rand';

/** The run's one source of randomness, from its printed seed: the same seed gives the same schedule and workload mix. */
export class SeededRandom {
  private rng: prand.RandomGenerator;

  constructor(readonly seed: number) {
    this.rng = prand.xoroshiro128plus(seed);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return prand.unsafeUniformIntDistribution(min, max, this.rng);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.int(0, 999_999) < p * 1_000_000;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from nothing');
    return items[this.int(0, items.length - 1)]!;
  }

  /** One of `weighted`'s keys, each as likely as its weight. */
  weighted<K extends string>(weighted: Record<K, number>): K {
    const entries = Object.entries(weighted) as Array<[K, number]>;
    let roll = this.int(
      1,
      entries.reduce((sum, [, w]) => sum + w, 0),
    );
    for (const [key, weight] of entries) {
      roll -= weight;
      if (roll <= 0) return key;
    }
    return entries[entries.length - 1]![0];
  }

  /** An independent stream for one actor, so actors' interleaving does not change each other's choices. */
  fork(): SeededRandom {
    return new SeededRandom(this.int(0, 2 ** 31 - 1));
  }
}
