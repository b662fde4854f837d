import { createHash, type KeyObject } from 'node:crypto';
import { Binary, type Collection, type Db } from 'mongodb';
import {
  anchorSignatureValid,
  ChainVerifier,
  eventHash,
  GENESIS,
  signAnchor,
  type ChainBreak,
  type ChainStart,
  type JsonValue,
  type NormalizedEvent,
} from '../domain/audit-chain';
import type { AuditEvent } from '../domain/audit-event';
import { AUDIT_EVENTS_COLLECTION } from './audit-event.model';
import { isDuplicateKeyError } from './errors';
import { DeadlineExceededError, withDeadline } from '../platform/deadline';
import { SequencedAppender } from './sequenced-append';

export const AUDIT_ANCHORS_COLLECTION = 'audit_anchors';

/** The event exactly as stored: ciphertext as BSON binary subtype 6, no undefined fields. */
export type StoredAuditEvent = { _id: string; companyId: string; sequence: number; prevHash: string; hash: string } & {
  [key: string]: unknown;
};

export interface AuditAnchor {
  _id: string;
  companyId: string;
  sequence: number;
  hash: string;
  anchoredAt: Date;
  signature: string;
  keyId: string;
  /** A checkpoint is where verification starts after a retention purge removed what came before. */
  kind: 'anchor' | 'checkpoint';
}

export interface AnchorSigner {
  privateKey: KeyObject;
  publicKey: KeyObject;
  keyId: string;
}

export interface ChainReport {
  companyId: string;
  ok: boolean;
  checked: number;
  anchorsChecked: number;
  start: ChainStart & { from: 'genesis' | 'checkpoint' };
  head: ChainStart;
  broken?: ChainBreak;
}

export interface PurgeRecord {
  companyId: string;
  removed: number;
  throughSequence: number;
}

export interface AppendResult {
  eventId: string;
  sequence?: number;
  duplicate: boolean;
}

const MAX_APPEND_ATTEMPTS = 50;
/** The most events one write appends (they are small; the bound keeps one insert's batch modest). */
const MAX_GROUP_EVENTS = 100;
/** A group write unanswered this long is given up (see the constructor): far above any write's seconds under load. */
const APPEND_STALL_MS = 30_000;

interface WaitingAppend {
  jobs: Array<{ job: AuditEvent; recordedAt: Date }>;
  resolve(results: AppendResult[]): void;
  reject(error: unknown): void;
}

export function anchorKeyId(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** Storage form → JSON for hashing: dates as ISO strings, binaries as base64 with their subtype. */
export function normalizeForHash(value: unknown): JsonValue {
  if (value instanceof Date) return value.toISOString();
  if (value instanceof Binary)
    return { $binary: Buffer.from(value.buffer).toString('base64'), subType: value.sub_type };
  if (Array.isArray(value)) return value.map(normalizeForHash);
  if (value !== null && typeof value === 'object') {
    const out: { [key: string]: JsonValue } = {};
    for (const [key, item] of Object.entries(value)) if (item !== undefined) out[key] = normalizeForHash(item);
    return out;
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null)
    return value;
  throw new Error(`cannot hash a value of type ${typeof value}`);
}

function hashBody(event: Record<string, unknown>): NormalizedEvent {
  const { hash: _hash, ...body } = event;
  return normalizeForHash(body) as NormalizedEvent;
}

function sealed(base64: string | undefined): Binary | undefined {
  return base64 ? new Binary(Buffer.from(base64, 'base64'), Binary.SUBTYPE_ENCRYPTED) : undefined;
}

function withoutUndefined<T extends Record<string, unknown>>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** Builds the stored document (without its hash) from an audit job. */
function storedBody(job: AuditEvent, sequence: number, prevHash: string, recordedAt: Date): Record<string, unknown> {
  const request = withoutUndefined({
    requestId: job.requestId,
    sourceIp: sealed(job.sealed?.sourceIp),
    userAgent: sealed(job.sealed?.userAgent),
  });
  return withoutUndefined({
    _id: job.eventId,
    companyId: job.companyId,
    officeId: job.officeId,
    sequence,
    occurredAt: new Date(job.occurredAt),
    recordedAt,
    action: job.action,
    outcome: job.outcome,
    severity: job.severity,
    actor: withoutUndefined({ ...job.actor, accessReason: sealed(job.sealed?.accessReason) }),
    resource: job.resource,
    reason: job.reason,
    route: job.route,
    permission: job.permission,
    request: Object.keys(request).length > 0 ? request : undefined,
    changes: job.changes,
    jobId: job.jobId,
    prevHash,
  });
}

/**
 * A company's append-only, hash-chained audit trail. Works on the plain driver
 * (no decryption): it stores and hashes ciphertext as is, so appending and
 * verifying never need the data keys.
 */
export class AuditTrail {
  readonly events: Collection<StoredAuditEvent>;
  readonly anchors: Collection<AuditAnchor>;

  /** Appends waiting per company, and the companies whose appends are being written (see `appendMany`). */
  private readonly waiting = new Map<string, WaitingAppend[]>();
  private readonly flushing = new Set<string>();

  /** Appends at the head of a company's chain; caches the last head this process wrote, per company. */
  private readonly appender = new SequencedAppender<ChainStart>({
    readHead: (companyId) => this.head(companyId),
    maxAttempts: MAX_APPEND_ATTEMPTS,
    jitterMs: 5,
    cacheHeads: true,
    busy: (companyId) => new Error(`audit chain of ${companyId} too contended; will retry`),
  });

  /**
   * `stallMs`: how long one group's write may go unanswered (a database connection that hangs rather than fails)
   * before its appends are failed, to be sent again, and the chain's next group is written without it. Every append of
   * a company in this process waits on the one before it, so one write that never answers would otherwise hold them
   * all, and with them every job that appends.
   */
  constructor(
    db: Db,
    private readonly options: { stallMs?: number } = {},
  ) {
    this.events = db.collection<StoredAuditEvent>(AUDIT_EVENTS_COLLECTION);
    this.anchors = db.collection<AuditAnchor>(AUDIT_ANCHORS_COLLECTION);
  }

  async ensureIndexes(): Promise<void> {
    // The chain's integrity under concurrent writers rests on this unique index: never rely on someone else creating it.
    await this.events.createIndex({ companyId: 1, sequence: 1 }, { unique: true, name: 'company_sequence' });
    await this.anchors.createIndex({ companyId: 1, sequence: 1 }, { name: 'company_sequence' });
  }

  private async head(companyId: string): Promise<ChainStart> {
    const last = await this.events
      .find({ companyId }, { projection: { sequence: 1, hash: 1 } })
      .sort({ sequence: -1 })
      .limit(1)
      .next();
    return last ? { sequence: last.sequence, hash: last.hash } : GENESIS;
  }

  /** Appends one event at the head of its company's chain (see `appendMany`). A redelivered event is stored once. */
  async append(job: AuditEvent, recordedAt = new Date()): Promise<AppendResult> {
    const [result] = await this.appendMany(job.companyId, [job], recordedAt);
    return result!;
  }

  /**
   * Appends events of one company, in order, at the head of its chain. Safe with many writers: the unique (company,
   * sequence) index lets one win, the others re-read the head and try again; a redelivered event is stored once (the
   * event id is the key).
   *
   * Group commit: within a process, appends to one company run one write at a time, and whatever arrived while a
   * write was under way (other jobs' events) goes into the next one: consecutive events of a chain in one ordered
   * `insertMany`. An idle chain writes at once; a busy one writes fewer, larger batches.
   */
  appendMany(companyId: string, jobs: AuditEvent[], recordedAt = new Date()): Promise<AppendResult[]> {
    if (jobs.some((job) => job.companyId !== companyId)) {
      return Promise.reject(new Error('appendMany takes the events of one company'));
    }
    if (jobs.length === 0) return Promise.resolve([]);
    return new Promise<AppendResult[]>((resolve, reject) => {
      const queue = this.waiting.get(companyId) ?? [];
      queue.push({ jobs: jobs.map((job) => ({ job, recordedAt })), resolve, reject });
      this.waiting.set(companyId, queue);
      if (!this.flushing.has(companyId)) void this.flush(companyId);
    });
  }

  /** Writes a company's waiting appends, a group at a time, until none is left. */
  private async flush(companyId: string): Promise<void> {
    this.flushing.add(companyId);
    try {
      for (;;) {
        const queue = this.waiting.get(companyId) ?? [];
        if (queue.length === 0) break;
        let events = 0;
        let taken = 0;
        while (taken < queue.length && (taken === 0 || events + queue[taken]!.jobs.length <= MAX_GROUP_EVENTS)) {
          events += queue[taken]!.jobs.length;
          taken += 1;
        }
        const group = queue.splice(0, taken);
        if (queue.length === 0) this.waiting.delete(companyId);
        try {
          const stallMs = this.options.stallMs ?? APPEND_STALL_MS;
          const results = await withDeadline(
            this.appendChain(
              companyId,
              group.flatMap((entry) => entry.jobs),
            ),
            stallMs,
            `the audit chain write of ${companyId}`,
          ).catch((error: unknown) => {
            if (error instanceof DeadlineExceededError) this.appender.forget(companyId);
            throw error;
          });
          // An event given twice (two deliveries of one job in one group) is appended by the first: the second is a duplicate.
          const byId = new Map(results.map((result) => [result.eventId, result]));
          const handedOut = new Set<string>();
          const resultOf = (eventId: string): AppendResult => {
            const result = byId.get(eventId)!;
            if (result.duplicate || !handedOut.has(eventId)) {
              handedOut.add(eventId);
              return result;
            }
            return { eventId, duplicate: true };
          };
          for (const entry of group) entry.resolve(entry.jobs.map(({ job }) => resultOf(job.eventId)));
        } catch (error) {
          // Each job of the group is retried by its queue; what was stored is found by id then.
          for (const entry of group) entry.reject(error);
        }
      }
    } finally {
      this.flushing.delete(companyId);
    }
  }

  /**
   * One round of writes for a group: its events in one ordered `insertMany` at head + 1, head + 2, … An ordered
   * insert stores a prefix and stops at its first refused document, so the chain never gets a gap or a fork; after a
   * duplicate key, the events already stored (a redelivery, an event sent twice) are found and left out, and the rest
   * is placed again on the new head.
   */
  private appendChain(
    companyId: string,
    entries: Array<{ job: AuditEvent; recordedAt: Date }>,
  ): Promise<AppendResult[]> {
    const jobs = entries.map((entry) => entry.job);
    /** What is known to be stored: by an earlier round of this call (with its place), or before it (a duplicate). */
    const known = new Map<string, AppendResult>();
    /** The last round: the head it was placed on, its documents and how many of them the ordered insert stored. */
    let round: { head: ChainStart; documents: StoredAuditEvent[]; inserted: number } | undefined;
    const ordered = (placed: Map<string, AppendResult> = known) =>
      jobs.map((job) => placed.get(job.eventId) ?? known.get(job.eventId) ?? { eventId: job.eventId, duplicate: true });
    return this.appender.append<StoredAuditEvent[], AppendResult[]>(companyId, {
      decide: (head, first) => {
        const pending = jobs.filter(
          (job, i) => !known.has(job.eventId) && jobs.findIndex((other) => other.eventId === job.eventId) === i,
        );
        if (pending.length === 0) return { done: ordered() };
        const documents: StoredAuditEvent[] = [];
        const placed = new Map<string, AppendResult>();
        let link = head.hash;
        pending.forEach((job, i) => {
          const body = storedBody(job, first + i, link, entries.find((entry) => entry.job === job)!.recordedAt);
          link = eventHash(link, hashBody(body));
          documents.push({ ...(body as StoredAuditEvent), hash: link });
          placed.set(job.eventId, { eventId: job.eventId, sequence: first + i, duplicate: false });
        });
        round = { head, documents, inserted: 0 };
        return {
          insert: documents,
          result: ordered(placed),
          head: { sequence: first + pending.length - 1, hash: link },
        };
      },
      insert: async (documents) => {
        try {
          await this.events.insertMany(documents, { ordered: true });
        } catch (error) {
          // An ordered insert stores the prefix before the refused document: those are appended, the rest decided again.
          const inserted = (error as { insertedCount?: number }).insertedCount ?? 0;
          if (round) round.inserted = inserted;
          for (const d of documents.slice(0, inserted)) {
            known.set(d._id, { eventId: d._id, sequence: d.sequence, duplicate: false });
          }
          throw error;
        }
      },
      // After a duplicate key: which of the rest are stored already (a redelivery); those are left out from now on.
      alreadyStored: async () => {
        const ids = jobs.map((job) => job.eventId).filter((id) => !known.has(id));
        const found = await this.events.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray();
        for (const { _id } of found) known.set(_id, { eventId: _id, duplicate: true });
        if (ids.every((id) => known.has(id))) return { done: ordered() };
        // Refused by an event stored before (a redelivery), not by a place another writer took: the head is the
        // last document this round stored, and the rest goes on from there without a head read.
        const refused = round?.documents[round.inserted];
        if (round && refused && found.some(({ _id }) => _id === refused._id)) {
          const last = round.documents[round.inserted - 1];
          return { head: last ? { sequence: last.sequence, hash: last.hash } : round.head };
        }
        return undefined;
      },
    });
  }

  async companies(): Promise<string[]> {
    return (await this.events.distinct('companyId')) as string[];
  }

  /** Signs each company's current head, unless it is already anchored. Returns how many anchors were written. */
  async anchorHeads(signer: AnchorSigner, now = new Date()): Promise<number> {
    let written = 0;
    for (const companyId of await this.companies()) {
      const head = await this.head(companyId);
      const _id = `anchor-${companyId}-${head.sequence}`;
      if (head.sequence === 0 || (await this.anchors.findOne({ _id }, { projection: { _id: 1 } }))) continue;
      await this.writeAnchor({ _id, companyId, sequence: head.sequence, hash: head.hash, kind: 'anchor' }, signer, now);
      written += 1;
    }
    return written;
  }

  private async writeAnchor(
    anchor: Pick<AuditAnchor, '_id' | 'companyId' | 'sequence' | 'hash' | 'kind'>,
    signer: AnchorSigner,
    now: Date,
  ): Promise<void> {
    const anchoredAt = now.toISOString();
    const signature = signAnchor(
      { companyId: anchor.companyId, sequence: anchor.sequence, hash: anchor.hash, anchoredAt },
      signer.privateKey,
    );
    try {
      await this.anchors.insertOne({ ...anchor, anchoredAt: now, signature, keyId: signer.keyId });
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
    }
  }

  /**
   * Retention: removes a company's oldest events recorded before `cutoff`, as a
   * contiguous prefix of the chain and never its head. A signed checkpoint at
   * the last removed event is written first, so the rest still verifies.
   */
  async purgeBefore(
    cutoff: Date,
    signer: AnchorSigner,
    /** Records the purge (an audit event) before anything is deleted, so no deletion goes unrecorded. */
    recordPurge: (purge: PurgeRecord) => Promise<void>,
    now = new Date(),
  ): Promise<PurgeRecord[]> {
    const purged = [];
    for (const companyId of await this.companies()) {
      const head = await this.head(companyId);
      const firstKept = await this.events
        .find({ companyId, recordedAt: { $gte: cutoff } }, { projection: { sequence: 1 } })
        .sort({ sequence: 1 })
        .limit(1)
        .next();
      const through = Math.min(firstKept ? firstKept.sequence - 1 : head.sequence, head.sequence - 1);
      const last = through > 0 ? await this.events.findOne({ companyId, sequence: through }) : null;
      if (!last) continue;
      await this.writeAnchor(
        {
          _id: `checkpoint-${companyId}-${through}`,
          companyId,
          sequence: through,
          hash: last.hash,
          kind: 'checkpoint',
        },
        signer,
        now,
      );
      const removing = await this.events.countDocuments({ companyId, sequence: { $lte: through } });
      const purge = { companyId, removed: removing, throughSequence: through };
      await recordPurge(purge);
      await this.events.deleteMany({ companyId, sequence: { $lte: through } });
      purged.push(purge);
    }
    return purged;
  }

  /** Recomputes the chain and checks every anchor; reports the first broken link. */
  async verify(companyId: string, publicKey: KeyObject): Promise<ChainReport> {
    const anchors = await this.anchors.find({ companyId }).sort({ sequence: 1 }).toArray();
    let anchorsChecked = 0;
    const badSignature = anchors.find(
      (a) =>
        !anchorSignatureValid(
          { companyId, sequence: a.sequence, hash: a.hash, anchoredAt: a.anchoredAt.toISOString() },
          a.signature,
          publicKey,
        ),
    );
    const checkpoint = anchors.filter((a) => a.kind === 'checkpoint').at(-1);
    const start = checkpoint
      ? { sequence: checkpoint.sequence, hash: checkpoint.hash, from: 'checkpoint' as const }
      : { ...GENESIS, from: 'genesis' as const };
    const report = (verifier: ChainVerifier, broken?: ChainBreak): ChainReport => ({
      companyId,
      ok: !broken,
      checked: verifier.checked,
      anchorsChecked,
      start,
      head: verifier.head,
      ...(broken ? { broken } : {}),
    });
    const verifier = new ChainVerifier(start);
    if (badSignature) {
      return report(verifier, {
        sequence: badSignature.sequence,
        problem: 'anchor_signature_invalid',
        expected: 'a valid signature',
        found: badSignature.signature.slice(0, 16),
      });
    }
    const anchorAt = new Map(anchors.filter((a) => a.sequence > start.sequence).map((a) => [a.sequence, a]));
    const cursor = this.events.find({ companyId, sequence: { $gt: start.sequence } }).sort({ sequence: 1 });
    for await (const event of cursor) {
      if (
        !verifier.next({ sequence: event.sequence, prevHash: event.prevHash, hash: event.hash, body: hashBody(event) })
      ) {
        return report(verifier, verifier.broken);
      }
      const anchor = anchorAt.get(event.sequence);
      if (anchor) {
        anchorsChecked += 1;
        anchorAt.delete(event.sequence);
        if (anchor.hash !== event.hash) {
          return report(verifier, {
            sequence: event.sequence,
            problem: 'anchor_mismatch',
            expected: anchor.hash,
            found: event.hash,
          });
        }
      }
    }
    const beyond = [...anchorAt.values()][0];
    if (beyond) {
      return report(verifier, {
        sequence: beyond.sequence,
        problem: 'anchor_beyond_head',
        expected: `events through ${beyond.sequence}`,
        found: `head at ${verifier.head.sequence}`,
      });
    }
    return report(verifier);
  }
}
