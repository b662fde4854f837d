import { randomBytes } from 'node:crypto';
import type { Connection, Document, Model, Query, Schema, UpdateQuery } from 'mongoose';
import type { RedisClient } from '../platform/redis';

/**
 * Cache tokens of the documents a worker process caches (models/settings-cache.ts): companies, offices, invoice
 * settings, billing settings. Every write of one of them first sets the document's token in Redis to a fresh random
 * value, then writes the document with that same value in `cacheToken`. A process caches a document only when the
 * token it read in the document equals the one it read from Redis *before* reading the document, and uses a cached
 * document only while Redis still holds its token (one MGET per job). So:
 * - a change answered to its caller set a new Redis token before it was stored: every later job sees the token move
 *   and reads the document again;
 * - a crash between the two writes leaves Redis and the document different: nothing is cached until the next write;
 * - a lost concurrent update (FerretDB) keeps each document's token with the content it was written with: Redis
 *   names the newest token, which a reverted document does not carry, so it is not cached.
 * The token is set by a mongoose hook on every write of these models (not by each caller), so no writer can forget
 * it; a write whose target is not one document named by `_id` is refused.
 */
export type TokenedKind = 'company' | 'office' | 'invoice_settings' | 'billing_settings';

export class DocumentTokens {
  constructor(
    private readonly redis: RedisClient,
    /** The deployment's hash-tagged prefix (QUEUE_PREFIX): every key in the queues' Redis Cluster slot. */
    private readonly prefix: string,
  ) {}

  key(kind: TokenedKind, id: string): string {
    return `${this.prefix}:doc-token:${kind}:${id}`;
  }

  /** A fresh token for a document about to be written, stored in Redis first (a failure refuses the write). */
  async bump(kind: TokenedKind, id: string): Promise<string> {
    const token = randomBytes(12).toString('base64url');
    try {
      await this.redis.set(this.key(kind, id), token);
    } catch (error) {
      // Stored without its token, another process could keep serving what this write replaces: not stored.
      throw new TokenStoreUnavailableError(`the ${kind} is not written: Redis did not take its cache token`, {
        cause: error,
      });
    }
    return token;
  }

  /** The current tokens (null where none was ever set), in one round trip. */
  async current(keys: readonly string[]): Promise<Array<string | null>> {
    if (keys.length === 0) return [];
    return this.redis.mget(...keys);
  }
}

const stores = new WeakMap<Connection, DocumentTokens>();

/** The token store the writes through this connection's models use (models/index.ts registers it). */
export function registerDocumentTokens(connection: Connection, tokens: DocumentTokens): void {
  stores.set(connection, tokens);
}

export class UntokenedWriteError extends Error {
  override readonly name: string = 'UntokenedWriteError';
}

/** Refused because Redis is out: the same write succeeds once it is back (the api answers 503, try again). */
export class TokenStoreUnavailableError extends UntokenedWriteError {
  override readonly name = 'TokenStoreUnavailableError';
}

function storeOf(connection: Connection, kind: TokenedKind): DocumentTokens {
  const store = stores.get(connection);
  if (!store) throw new UntokenedWriteError(`a ${kind} document cannot be written without its cache token store`);
  return store;
}

const QUERY_WRITES = [
  'updateOne',
  'updateMany',
  'findOneAndUpdate',
  'replaceOne',
  'findOneAndReplace',
  'deleteOne',
  'deleteMany',
  'findOneAndDelete',
] as const;

/** Adds `cacheToken` to a schema and the hooks that set it (Redis first) on every write of its documents. */
export function tokenedDocuments(schema: Schema, kind: TokenedKind): void {
  schema.add({ cacheToken: { type: String } });
  for (const op of QUERY_WRITES) {
    schema.pre(op, async function (this: Query<unknown, unknown>) {
      const id: unknown = this.getFilter()?._id;
      if (typeof id !== 'string') {
        throw new UntokenedWriteError(`a ${kind} write must name one document by its _id (its cache token)`);
      }
      const token = await storeOf(this.model.db, kind).bump(kind, id);
      if (op.startsWith('delete') || op === 'findOneAndDelete') return;
      if (op === 'replaceOne' || op === 'findOneAndReplace') {
        this.setUpdate({ ...this.getUpdate(), cacheToken: token });
        return;
      }
      const update: UpdateQuery<unknown> = this.getUpdate() ?? {};
      this.setUpdate({ ...update, $set: { ...(update.$set ?? {}), cacheToken: token } });
    });
  }
  schema.pre('save', async function (this: Document) {
    const model = this.constructor as Model<unknown>;
    this.set('cacheToken', await storeOf(model.db, kind).bump(kind, String(this._id)));
  });
  schema.pre('insertMany', function (this: Model<unknown>, next: (error?: Error) => void, docs: unknown) {
    const list = (Array.isArray(docs) ? docs : [docs]) as Array<Record<string, unknown>>;
    let store: DocumentTokens;
    try {
      store = storeOf(this.db, kind);
    } catch (error) {
      next(error as Error);
      return;
    }
    Promise.all(list.map(async (doc) => (doc.cacheToken = await store.bump(kind, String(doc._id))))).then(
      () => next(),
      (error: Error) => next(error),
    );
  });
  schema.pre('bulkWrite', function (this: unknown, next: (error?: Error) => void) {
    next(new UntokenedWriteError(`${kind} documents are written one at a time (their cache tokens)`));
  });
}
