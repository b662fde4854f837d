import { isDuplicateKeyError } from './errors';

/**
 * "Append at head + 1 under a unique index, retry on a duplicate", for every
 * per-key sequence we keep (a company's audit chain, a payment's refund
 * ledger, a company's invoice numbers).
 *
 * Why an insert: it is the one atomic step every MongoDB-wire server gives us.
 * FerretDB applies concurrent updates of one document as read-modify-write and
 * can lose some; an insert under a unique (key, sequence) index cannot be lost
 * or doubled. A writer reads the key's head, decides what to write at
 * `head.sequence + 1` and inserts it; when another writer took that place
 * first, the insert fails with a duplicate key and the writer decides again on
 * the new head. So a key's sequence has no gap and no duplicate, and a decision
 * (a bound on a total, a hash link) always rests on the head it was taken on.
 */

export interface SequenceHead {
  /** 0 for an empty sequence. */
  readonly sequence: number;
}

/** One round's decision: nothing to write, or the document to insert and what to return once it is in. */
export type AppendDecision<H, D, T> =
  | { done: T }
  | {
      insert: D;
      result: T;
      /** The head once `insert` is in; kept by an appender that caches heads (otherwise it reads it next time). */
      head?: H;
    };

export interface AppendStep<H extends SequenceHead, D, T> {
  /**
   * Decides on the key's head. `sequence` is `head.sequence + 1`, the place the document must take. It may
   * read more (what this subject already wrote), as long as it reads it after the head: then anything written
   * since takes the place this insert wants, and makes it decide again.
   */
  decide(head: H, sequence: number): AppendDecision<H, D, T> | Promise<AppendDecision<H, D, T>>;
  /** Must fail with a duplicate-key error when the place (or the document's own id) is taken. */
  insert(document: D): Promise<unknown>;
  /**
   * After a duplicate key: whether this very append is stored already (a redelivery), and its result if so; or,
   * when what refused it is known to be a stored document of its own (not a place another writer took), the head
   * to go on from without reading it.
   */
  alreadyStored?(): Promise<{ done: T } | { head: H } | undefined>;
}

export interface SequencedAppenderOptions<H extends SequenceHead> {
  /** Reads a key's head from storage. */
  readHead(key: string): Promise<H>;
  /** Rounds before giving up with `busy`. */
  maxAttempts: number;
  /** After the n-th lost race, a random pause of up to n × jitterMs, so writers do not collide in lockstep. */
  jitterMs?: number;
  /**
   * Keeps the last head this process wrote per key and appends to one key at a time in this process, so
   * concurrent appends here do not race each other for one place (a stale head only costs a retry).
   */
  cacheHeads?: boolean;
  /** The error when every round lost its race: transient, the caller retries later. */
  busy(key: string): Error;
}

export class SequencedAppender<H extends SequenceHead> {
  private readonly heads = new Map<string, H>();
  private readonly appending = new Map<string, Promise<void>>();

  constructor(private readonly options: SequencedAppenderOptions<H>) {}

  append<D, T>(key: string, step: AppendStep<H, D, T>): Promise<T> {
    if (!this.options.cacheHeads) return this.appendAtHead(key, step);
    const previous = this.appending.get(key) ?? Promise.resolve();
    const run = previous.then(() => this.appendAtHead(key, step));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.appending.set(key, settled);
    void settled.then(() => {
      if (this.appending.get(key) === settled) this.appending.delete(key);
    });
    return run;
  }

  /**
   * Forgets a key's cached head and its place in this process's order: after a write that never answered, the next
   * append goes on without waiting for it, from the head as stored (the unique index keeps the sequence whole whether
   * or not the lost write lands later).
   */
  forget(key: string): void {
    this.heads.delete(key);
    this.appending.delete(key);
  }

  private async appendAtHead<D, T>(key: string, step: AppendStep<H, D, T>): Promise<T> {
    const { readHead, maxAttempts, jitterMs = 0, cacheHeads = false } = this.options;
    let head = (cacheHeads ? this.heads.get(key) : undefined) ?? (await readHead(key));
    for (let attempt = 1; ; attempt += 1) {
      const decided = await step.decide(head, head.sequence + 1);
      if ('done' in decided) return decided.done;
      try {
        await step.insert(decided.insert);
        if (cacheHeads) {
          if (decided.head) this.heads.set(key, decided.head);
          else this.heads.delete(key);
        }
        return decided.result;
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
        const stored = await step.alreadyStored?.();
        if (stored && 'done' in stored) return stored.done;
        this.heads.delete(key);
        if (stored) {
          // Not a lost race: the head is known, and the next round needs no read (and no pause).
          head = stored.head;
          if (attempt >= maxAttempts) throw this.options.busy(key);
          continue;
        }
      }
      if (attempt >= maxAttempts) throw this.options.busy(key);
      if (jitterMs > 0) await new Promise((resolve) => setTimeout(resolve, Math.random() * jitterMs * attempt));
      head = await readHead(key);
    }
  }
}
