import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Connection, Query, Schema } from 'mongoose';
import type { RedisClient } from '../platform/redis';

/**
 * One update at a time per document, for a server whose single-document update is not atomic.
 *
 * MongoDB applies an update of one document atomically: a conditional update (`{ _id, status: 'active' }`) matches
 * the document as it is at the write, and two updates of different fields both stay. FerretDB 1.x (the dev and test
 * server, ENVIRONMENT.md) applies an update as a read of the matching documents, then a write of each whole document
 * by `_id`: of two updates of one document at the same moment, the later write puts back what the other changed
 * (a cancel's `status: canceled` reverted by a renewal's `nextBillingAt`), and a filter is checked on the read, not
 * at the write. Where the server is such (`openDatabase` asks it), the updates of a schema given `serializedWrites`
 * hold a lease on their document in Redis for the length of the command (`SET NX PX`, released by compare-and-delete:
 * the Redis documentation's single-instance lock), so each reads what the one before it wrote: the conditional
 * updates the application relies on hold as on MongoDB. On MongoDB nothing is registered and the hooks do nothing.
 *
 * Written here, not taken from `redlock`: its stable release (4.2, 2020) predates ioredis 5 and its 5.x has stayed a
 * beta; what is needed is one key, one `SET`, one compare-and-delete.
 */
export class DocumentWriteLeases {
  constructor(
    private readonly redis: RedisClient,
    /** The deployment's hash-tagged prefix (QUEUE_PREFIX): every key in the queues' Redis Cluster slot. */
    private readonly prefix: string,
    private readonly options: { leaseMs: number; waitMs: number } = { leaseMs: 5_000, waitMs: 10_000 },
  ) {}

  key(kind: string, id: string): string {
    return `${this.prefix}:doc-write:${kind}:${id}`;
  }

  /** Waits (a few ms at a time) until the document is free, then holds it; the lease's token releases it. */
  async acquire(kind: string, id: string): Promise<{ key: string; token: string }> {
    const key = this.key(kind, id);
    const token = randomBytes(12).toString('base64url');
    const deadline = Date.now() + this.options.waitMs;
    for (let wait = 1; ; wait = Math.min(wait * 2, 16)) {
      let taken: string | null;
      try {
        taken = await this.redis.set(key, token, 'PX', this.options.leaseMs, 'NX');
      } catch (error) {
        throw new DocumentWriteUnavailableError(`the ${kind} is not written: Redis did not take its write lease`, {
          cause: error,
        });
      }
      if (taken === 'OK') return { key, token };
      if (Date.now() >= deadline) {
        throw new DocumentWriteUnavailableError(
          `the ${kind} is not written: another write of it held it for ${this.options.waitMs} ms`,
        );
      }
      await sleep(wait + Math.random() * wait);
    }
  }

  /** Frees the document, unless the lease ran out and another write holds it now. */
  async release(lease: { key: string; token: string }): Promise<void> {
    await this.redis.eval(RELEASE, 1, lease.key, lease.token).catch(() => undefined);
  }
}

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;

/** The write was not made: Redis is out, or the document stayed busy; the same write succeeds later (the api: 503). */
export class DocumentWriteUnavailableError extends Error {
  override readonly name = 'DocumentWriteUnavailableError';
}

const leasesByConnection = new WeakMap<Connection, DocumentWriteLeases>();

/** Serializes the updates through this connection's models (models/index.ts, on a server that needs it). */
export function registerDocumentWriteLeases(connection: Connection, leases: DocumentWriteLeases): void {
  leasesByConnection.set(connection, leases);
}

const UPDATES = ['updateOne', 'findOneAndUpdate', 'replaceOne', 'findOneAndReplace'] as const;
/** The lease an update in flight holds (by its query), and where it came from. */
const held = new WeakMap<object, { leases: DocumentWriteLeases; lease: { key: string; token: string } }>();

async function releaseHeld(query: object): Promise<void> {
  const holding = held.get(query);
  if (!holding) return;
  held.delete(query);
  await holding.leases.release(holding.lease);
}

/** Makes the updates of a schema's documents one at a time per document where the server needs it (above). */
export function serializedWrites(schema: Schema, kind: string): void {
  for (const op of UPDATES) {
    schema.pre(op, async function (this: Query<unknown, unknown>) {
      // Refused on every server alike, so a write the tests pass is one that can be serialized.
      const id: unknown = this.getFilter()?._id;
      if (typeof id !== 'string') {
        throw new Error(`a ${kind} update must name one document by its _id (its write lease)`);
      }
      const leases = leasesByConnection.get(this.model.db);
      if (leases) held.set(this, { leases, lease: await leases.acquire(kind, id) });
    });
    schema.post(op, async function (this: Query<unknown, unknown>) {
      await releaseHeld(this);
    });
    // Three parameters: mongoose calls it when the update (or a hook before it) failed.
    schema.post(
      op,
      function (this: Query<unknown, unknown>, error: Error, _result: unknown, next: (e?: Error) => void) {
        void releaseHeld(this).then(() => next(error));
      },
    );
  }
  // Not serializable: a write of many documents, or one a hook cannot see.
  const refuse = (next: (error?: Error) => void) =>
    next(new Error(`${kind} documents are updated one at a time, by _id (their write leases)`));
  schema.pre('updateMany', function (next) {
    refuse(next);
  });
  schema.pre('bulkWrite', function (this: unknown, next: (error?: Error) => void) {
    refuse(next);
  });
}
