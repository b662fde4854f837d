import { randomBytes } from 'node:crypto';
import { MongoClient, type Collection } from 'mongodb';
import { withDatabaseName } from '../../devtools/services';
import { SequencedAppender, type AppendStep, type SequenceHead } from '../../models/sequenced-append';

/** One entry of a keyed sequence, the way the audit chain and the refund ledger store theirs. */
interface Entry {
  _id: string;
  key: string;
  sequence: number;
  /** A running total carried by each entry, like the ledger's reserved amount. */
  total: number;
}
type Head = SequenceHead & { total: number };

let client: MongoClient;
let entries: Collection<Entry>;

beforeAll(async () => {
  const uri = withDatabaseName(process.env.MONGODB_URI ?? '', `hbt_seqappend_${randomBytes(5).toString('hex')}`);
  client = await MongoClient.connect(uri, { serverSelectionTimeoutMS: 10_000 });
  entries = client.db().collection<Entry>('entries');
  await entries.createIndex({ key: 1, sequence: 1 }, { unique: true, name: 'key_sequence' });
});

afterAll(async () => {
  await client?.db().dropDatabase();
  await client?.close();
});

function appender(options: { cacheHeads?: boolean; maxAttempts?: number } = {}): SequencedAppender<Head> {
  return new SequencedAppender<Head>({
    readHead: async (key) => {
      const last = await entries.find({ key }).sort({ sequence: -1 }).limit(1).next();
      return last ? { sequence: last.sequence, total: last.total } : { sequence: 0, total: 0 };
    },
    maxAttempts: options.maxAttempts ?? 200,
    jitterMs: 5,
    cacheHeads: options.cacheHeads ?? false,
    busy: (key) => new Error(`sequence ${key} busy`),
  });
}

/** Appends entry `id` adding `amount` to the total, unless that would pass `limit`. */
function addStep(key: string, id: string, amount: number, limit = Infinity): AppendStep<Head, Entry, boolean> {
  return {
    decide: (head, sequence) =>
      head.total + amount > limit
        ? { done: false }
        : {
            insert: { _id: id, key, sequence, total: head.total + amount },
            result: true,
            head: { sequence, total: head.total + amount },
          },
    insert: (entry) => entries.insertOne(entry),
    alreadyStored: async () => ((await entries.findOne({ _id: id })) ? { done: true } : undefined),
  };
}

async function sequencesOf(key: string): Promise<number[]> {
  return (await entries.find({ key }).sort({ sequence: 1 }).toArray()).map((entry) => entry.sequence);
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe('sequenced append under a unique (key, sequence) index', () => {
  it('gives concurrent appenders (as from several processes) one gap-free, duplicate-free sequence per key', async () => {
    // Four "processes" caching their heads and two that do not, all writing two keys at once.
    const appenders = [
      appender({ cacheHeads: true }),
      appender({ cacheHeads: true }),
      appender({ cacheHeads: true }),
      appender({ cacheHeads: true }),
      appender(),
      appender(),
    ];
    const perAppender = 8;
    const keys = ['key-a', 'key-b'];
    const results = await Promise.all(
      appenders.flatMap((writer, w) =>
        keys.flatMap((key) => range(perAppender).map((n) => writer.append(key, addStep(key, `${key}-${w}-${n}`, 1)))),
      ),
    );
    expect(results.every(Boolean)).toBe(true);

    const total = appenders.length * perAppender;
    for (const key of keys) {
      // Every append is stored exactly once, at places 1…n with no gap; the two keys do not share a sequence.
      expect(await sequencesOf(key)).toEqual(range(total));
      const ids = (await entries.find({ key }).toArray()).map((entry) => entry._id);
      expect(new Set(ids).size).toBe(total);
      expect(ids.every((id) => id.startsWith(`${key}-`))).toBe(true);
      // Each decision was taken on the head it was appended after: the running total never skipped or repeated.
      const last = await entries.findOne({ key, sequence: total });
      expect(last?.total).toBe(total);
    }
  }, 60_000);

  it('never lets a bounded total pass its bound, however many writers race (the over-refund case)', async () => {
    const writers = [appender(), appender(), appender({ cacheHeads: true })];
    const attempts = await Promise.all(
      range(12).map((n) =>
        writers[n % writers.length]!.append('bounded', addStep('bounded', `bounded-${n}`, 300, 1_000)),
      ),
    );
    expect(attempts.filter(Boolean)).toHaveLength(3);
    expect(await sequencesOf('bounded')).toEqual([1, 2, 3]);
    expect((await entries.findOne({ key: 'bounded', sequence: 3 }))?.total).toBe(900);
  }, 30_000);

  it('stores a redelivered append once, from a fresh process or from the one that wrote it', async () => {
    const first = appender({ cacheHeads: true });
    expect(await first.append('redelivered', addStep('redelivered', 'once', 1))).toBe(true);
    // Same id again: its insert collides on _id, and alreadyStored reports it done without a second entry.
    expect(await appender().append('redelivered', addStep('redelivered', 'once', 1))).toBe(true);
    expect(await first.append('redelivered', addStep('redelivered', 'once', 1))).toBe(true);
    expect(await sequencesOf('redelivered')).toEqual([1]);
  });

  it('recovers from a stale cached head (another process wrote since) with a retry, not a gap', async () => {
    const cached = appender({ cacheHeads: true });
    await cached.append('stale', addStep('stale', 'stale-1', 1));
    await appender().append('stale', addStep('stale', 'stale-2', 1));
    await cached.append('stale', addStep('stale', 'stale-3', 1));
    expect(await sequencesOf('stale')).toEqual([1, 2, 3]);
    expect((await entries.findOne({ _id: 'stale-3' }))?.total).toBe(3);
  });

  it('gives up with the busy error after maxAttempts lost races, and rethrows any other error at once', async () => {
    let inserts = 0;
    const alwaysTaken: AppendStep<Head, Entry, boolean> = {
      decide: (_head, sequence) => ({ insert: { _id: 'x', key: 'busy', sequence, total: 0 }, result: true }),
      insert: () => {
        inserts += 1;
        return Promise.reject(Object.assign(new Error('E11000 duplicate key'), { code: 11000 }));
      },
    };
    await expect(appender({ maxAttempts: 3 }).append('busy', alwaysTaken)).rejects.toThrow('sequence busy busy');
    expect(inserts).toBe(3);

    const down = { ...alwaysTaken, insert: () => Promise.reject(new Error('connection refused')) };
    await expect(appender({ maxAttempts: 3 }).append('busy', down)).rejects.toThrow('connection refused');
  });
});
