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

  /** Appends at the head of a company's chain; caches the last head this process wrote, per company. */
  private readonly appender = new SequencedAppender<ChainStart>({
    readHead: (companyId) => this.head(companyId),
    maxAttempts: MAX_APPEND_ATTEMPTS,
    jitterMs: 5,
    cacheHeads: true,
    busy: (companyId) => new Error(`audit chain of ${companyId} too contended; will retry`),
  });

  constructor(db: Db) {
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

  /**
   * Appends one event at the head of its company's chain. Safe with many
   * writers: the unique (company, sequence) index lets one win, the others
   * re-read the head and try again. A redelivered event is stored once.
   * Within a process, appends to one company run one at a time from a cached
   * head, so concurrent audit jobs do not race each other for the same sequence.
   */
  append(job: AuditEvent, recordedAt = new Date()): Promise<AppendResult> {
    return this.appender.append<StoredAuditEvent, AppendResult>(job.companyId, {
      decide: (head, sequence) => {
        const body = storedBody(job, sequence, head.hash, recordedAt);
        const hash = eventHash(head.hash, hashBody(body));
        return {
          insert: { ...(body as StoredAuditEvent), hash },
          result: { eventId: job.eventId, sequence, duplicate: false },
          head: { sequence, hash },
        };
      },
      insert: (event) => this.events.insertOne(event),
      // A duplicate: either this very event is stored already (a redelivery), or another process took the place.
      alreadyStored: async () =>
        (await this.events.findOne({ _id: job.eventId }, { projection: { _id: 1 } }))
          ? { done: { eventId: job.eventId, duplicate: true } }
          : undefined,
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
