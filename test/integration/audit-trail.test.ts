import { generateKeyPairSync } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Queue, type Job, type Worker } from 'bullmq';
import { Binary, type Collection, type Document } from 'mongodb';
import { withDatabaseName } from '../../devtools/services';
import { ChainVerifier, eventHash, GENESIS_HASH, signAnchor, type NormalizedEvent } from '../../domain/audit-chain';
import { openDatabase, type Database } from '../../models';
import { AUDIT_EVENTS_COLLECTION } from '../../models/audit-event.model';
import {
  AUDIT_ANCHORS_COLLECTION,
  AuditTrail,
  normalizeForHash,
  type AnchorSigner,
  type AppendResult,
} from '../../models/audit-trail';
import { loadAnchorSigner } from '../../models/anchor-key';
import { type AuditEventInput, type AuditEvent } from '../../domain/audit-event';
import { auditJobSchema, enqueueAuditEvents, eventsOfAuditJob, type AuditJob } from '../../queues/audit.queue';
import { createAuditWorker, processAuditEvent } from '../../workers/audit.worker';
import { appendOrQueueAuditEvents } from '../../application/audit/append-events';
import { purgeExpiredAuditEvents } from '../../workers/maintenance.worker';
import { createTestContext, waitFor, type TestContext } from '../support/harness';

const ROOT = join(__dirname, '..', '..');
const DAY_MS = 24 * 60 * 60 * 1000;
/** Appends in flight per writer, as an audit worker runs them at the default AUDIT_CONCURRENCY. */
const WRITER_CONCURRENCY = 20;

let ctx: TestContext;
let signer: AnchorSigner;
/** What an attacker with database access uses: the plain driver, no model, no guard. */
let rawEvents: Collection<Document>;
let rawAnchors: Collection<Document>;

beforeAll(async () => {
  ctx = await createTestContext('audit_trail');
  signer = loadAnchorSigner(ctx.config.audit.anchorKeyFile, true);
  rawEvents = ctx.rawMongo.db().collection(AUDIT_EVENTS_COLLECTION);
  rawAnchors = ctx.rawMongo.db().collection(AUDIT_ANCHORS_COLLECTION);
});
afterAll(async () => ctx?.close());

function auditJob(companyId: string, n: number, extra: Partial<AuditEventInput> = {}): AuditEvent {
  return auditJobSchema.parse({
    eventId: `evt-${companyId}-${n}`,
    companyId,
    action: n % 4 === 0 ? 'payment.failed' : 'payment.requested',
    outcome: n % 4 === 0 ? 'failure' : 'success',
    actor: { type: 'user', id: `user_${n % 3}`, roles: ['billing_clerk'] },
    resource: { type: 'payment', id: `pay_${companyId}_${n}` },
    route: 'POST /v1/companies/:companyId/payments',
    permission: 'payments:create',
    requestId: `req_${n}`,
    occurredAt: new Date(Date.UTC(2025, 5, 1, 9, 0, n % 60, n)).toISOString(),
    ...extra,
  });
}

async function appendChain(companyId: string, count: number, from = 1, recordedAt?: Date): Promise<void> {
  for (let n = from; n < from + count; n += 1) {
    const result = await ctx.db.auditTrail.append(auditJob(companyId, n), recordedAt);
    expect(result).toEqual({ eventId: `evt-${companyId}-${n}`, sequence: n, duplicate: false });
  }
}

function verify(companyId: string) {
  return ctx.db.auditTrail.verify(companyId, signer.publicKey);
}

async function rawChain(companyId: string): Promise<Document[]> {
  return rawEvents.find({ companyId }).sort({ sequence: 1 }).toArray();
}

async function rawEvent(companyId: string, sequence: number): Promise<Document> {
  const event = await rawEvents.findOne({ companyId, sequence });
  if (!event) throw new Error(`no event ${sequence} of ${companyId}`);
  return event;
}

/** Every .ts file under a directory of the repository, as a path relative to the repository root. */
function tsFilesUnder(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return tsFilesUnder(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** The hash a stored document should carry, computed exactly as anyone can: from the stored bytes. */
function hashOfStored(event: Document, prevHash: string): string {
  const { hash: _hash, ...body } = event;
  return eventHash(prevHash, normalizeForHash(body) as NormalizedEvent);
}

describe('verify() on the stored chain', () => {
  it('accepts an intact chain of 20 events, from the genesis to its head', async () => {
    const companyId = 'co_intact';
    await appendChain(companyId, 20);
    const chain = await rawChain(companyId);
    expect(chain.map((e) => e.sequence)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(chain[0]?.prevHash).toBe(GENESIS_HASH);
    chain.forEach((event, i) => {
      if (i > 0) expect(event.prevHash).toBe(chain[i - 1]?.hash);
      expect(hashOfStored(event, event.prevHash as string)).toBe(event.hash);
    });

    const report = await verify(companyId);
    expect(report).toMatchObject({ companyId, ok: true, checked: 20, start: { sequence: 0, from: 'genesis' } });
    expect(report.head).toEqual({ sequence: 20, hash: chain[19]?.hash });
    expect(report.broken).toBeUndefined();
  });

  it('reports a changed field of event 7 as hash_mismatch at 7', async () => {
    const companyId = 'co_field_changed';
    await appendChain(companyId, 20);
    const { modifiedCount } = await rawEvents.updateOne({ companyId, sequence: 7 }, { $set: { outcome: 'denied' } });
    expect(modifiedCount).toBe(1);

    const report = await verify(companyId);
    expect(report.ok).toBe(false);
    expect(report.broken).toMatchObject({ sequence: 7, problem: 'hash_mismatch' });
    expect(report.checked).toBe(6);
  });

  it('reports a deleted event 7 as sequence_gap at 7', async () => {
    const companyId = 'co_event_deleted';
    await appendChain(companyId, 20);
    expect((await rawEvents.deleteOne({ companyId, sequence: 7 })).deletedCount).toBe(1);

    const report = await verify(companyId);
    expect(report.ok).toBe(false);
    expect(report.broken).toMatchObject({ sequence: 7, problem: 'sequence_gap', expected: '7', found: '8' });
  });

  it('reports events 5 and 6 with swapped sequence numbers at 5', async () => {
    const companyId = 'co_sequence_swapped';
    await appendChain(companyId, 20);
    // Through a parking spot: the unique (company, sequence) index forbids two events at one sequence.
    await rawEvents.updateOne({ companyId, sequence: 5 }, { $set: { sequence: 1_000_005 } });
    await rawEvents.updateOne({ companyId, sequence: 6 }, { $set: { sequence: 5 } });
    await rawEvents.updateOne({ companyId, sequence: 1_000_005 }, { $set: { sequence: 6 } });
    expect((await rawEvent(companyId, 5))._id).toBe(`evt-${companyId}-6`);

    const report = await verify(companyId);
    expect(report.broken).toMatchObject({ sequence: 5, problem: 'prev_hash_mismatch' });
  });

  it('reports the contents of events 5 and 6 swapped under their own links at 5', async () => {
    const companyId = 'co_content_swapped';
    await appendChain(companyId, 20);
    const [five, six] = [await rawEvent(companyId, 5), await rawEvent(companyId, 6)];
    const link = (e: Document) => ({ sequence: e.sequence, prevHash: e.prevHash, hash: e.hash });
    await rawEvents.deleteMany({ companyId, sequence: { $in: [5, 6] } });
    await rawEvents.insertMany([
      { ...six, ...link(five) },
      { ...five, ...link(six) },
    ]);
    expect((await rawEvent(companyId, 5))._id).toBe(`evt-${companyId}-6`);
    expect((await rawEvent(companyId, 5)).hash).toBe(five.hash);

    const report = await verify(companyId);
    expect(report.broken).toMatchObject({ sequence: 5, problem: 'hash_mismatch' });
  });
});

describe('anchors', () => {
  it('catch a consistently rewritten chain (every hash recomputed) at the anchored sequence', async () => {
    const companyId = 'co_rewritten';
    await appendChain(companyId, 12);
    expect(await ctx.db.auditTrail.anchorHeads(signer)).toBeGreaterThanOrEqual(1);
    const anchor = await rawAnchors.findOne({ companyId });
    expect(anchor).toMatchObject({ sequence: 12, kind: 'anchor', keyId: signer.keyId });
    await appendChain(companyId, 8, 13);

    // The attacker changes event 7 and re-links everything after it, so the chain alone is valid again.
    await rawEvents.updateOne({ companyId, sequence: 7 }, { $set: { outcome: 'denied' } });
    let prevHash = (await rawEvent(companyId, 6)).hash as string;
    for (let sequence = 7; sequence <= 20; sequence += 1) {
      const event = { ...(await rawEvent(companyId, sequence)), prevHash };
      const hash = hashOfStored(event, prevHash);
      await rawEvents.updateOne({ companyId, sequence }, { $set: { prevHash, hash } });
      prevHash = hash;
    }
    const chainAlone = new ChainVerifier();
    for (const event of await rawChain(companyId)) {
      const { hash: _hash, ...body } = event;
      chainAlone.next({
        sequence: event.sequence,
        prevHash: event.prevHash,
        hash: event.hash,
        body: normalizeForHash(body) as NormalizedEvent,
      });
    }
    expect(chainAlone.broken).toBeUndefined();
    expect(chainAlone.checked).toBe(20);

    const report = await verify(companyId);
    expect(report.ok).toBe(false);
    expect(report.broken).toMatchObject({ sequence: 12, problem: 'anchor_mismatch', expected: anchor?.hash });
  });

  it('catch events deleted from the end after an anchor (anchor_beyond_head)', async () => {
    const companyId = 'co_truncated';
    await appendChain(companyId, 20);
    await ctx.db.auditTrail.anchorHeads(signer);
    expect(await rawAnchors.countDocuments({ companyId, sequence: 20 })).toBe(1);
    expect((await verify(companyId)).ok).toBe(true);

    expect((await rawEvents.deleteMany({ companyId, sequence: { $gte: 18 } })).deletedCount).toBe(3);
    const report = await verify(companyId);
    expect(report.broken).toMatchObject({ sequence: 20, problem: 'anchor_beyond_head', found: 'head at 17' });
    expect(report.checked).toBe(17);
  });

  it('refuse an anchor signed by another key (anchor_signature_invalid)', async () => {
    const companyId = 'co_forged_anchor';
    await appendChain(companyId, 20);
    const head = await rawEvent(companyId, 20);
    const forger = generateKeyPairSync('ed25519');
    const anchoredAt = new Date();
    const statement = { companyId, sequence: 20, hash: head.hash as string, anchoredAt: anchoredAt.toISOString() };
    await rawAnchors.insertOne({
      _id: `anchor-${companyId}-20` as never,
      ...statement,
      anchoredAt,
      signature: signAnchor(statement, forger.privateKey),
      keyId: signer.keyId,
      kind: 'anchor',
    });

    const report = await verify(companyId);
    expect(report.broken).toMatchObject({ sequence: 20, problem: 'anchor_signature_invalid' });
  });

  it('refuse a forged checkpoint that would hide a deleted start of the chain', async () => {
    const companyId = 'co_forged_checkpoint';
    await appendChain(companyId, 20);
    const ten = await rawEvent(companyId, 10);
    await rawEvents.deleteMany({ companyId, sequence: { $lte: 10 } });
    expect((await verify(companyId)).broken).toMatchObject({ sequence: 1, problem: 'sequence_gap' });

    const forger = generateKeyPairSync('ed25519');
    const anchoredAt = new Date();
    const statement = { companyId, sequence: 10, hash: ten.hash as string, anchoredAt: anchoredAt.toISOString() };
    await rawAnchors.insertOne({
      _id: `checkpoint-${companyId}-10` as never,
      ...statement,
      anchoredAt,
      signature: signAnchor(statement, forger.privateKey),
      keyId: signer.keyId,
      kind: 'checkpoint',
    });
    expect((await verify(companyId)).broken).toMatchObject({ sequence: 10, problem: 'anchor_signature_invalid' });
  });
});

describe('sealed fields', () => {
  it('stores ciphertext as BSON binary subtype 6, hashes the stored bytes, and decrypts only through the model', async () => {
    const companyId = 'co_sealed';
    const ip = '203.0.113.7';
    const ciphertext = await ctx.db.encryption.encrypt(companyId, ip);
    await appendChain(companyId, 1);
    const sealed = auditJob(companyId, 2, {
      action: 'access.emergency',
      sealed: { sourceIp: Buffer.from(ciphertext.buffer).toString('base64') },
    });
    expect(await ctx.db.auditTrail.append(sealed)).toMatchObject({ sequence: 2, duplicate: false });
    await appendChain(companyId, 1, 3);

    const raw = await rawEvent(companyId, 2);
    const stored = raw.request?.sourceIp as Binary;
    expect(stored).toBeInstanceOf(Binary);
    expect(stored.sub_type).toBe(Binary.SUBTYPE_ENCRYPTED);
    expect(Buffer.from(stored.buffer).equals(Buffer.from(ciphertext.buffer))).toBe(true);
    expect(Buffer.from(stored.buffer).toString('latin1')).not.toContain(ip);
    expect(JSON.stringify(raw)).not.toContain(ip);
    expect(hashOfStored(raw, raw.prevHash as string)).toBe(raw.hash);

    expect(await verify(companyId)).toMatchObject({ ok: true, checked: 3 });

    const decrypted = await ctx.db.models.AuditEvent.findById(`evt-${companyId}-2`).lean();
    expect(decrypted?.request?.sourceIp).toBe(ip);
    expect(decrypted?.hash).toBe(raw.hash);

    // Verification needs no key: one flipped bit of ciphertext is caught on the stored bytes.
    const flipped = Buffer.from(stored.buffer);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 0x01;
    await rawEvents.updateOne(
      { companyId, sequence: 2 },
      { $set: { 'request.sourceIp': new Binary(flipped, Binary.SUBTYPE_ENCRYPTED) } },
    );
    expect((await verify(companyId)).broken).toMatchObject({ sequence: 2, problem: 'hash_mismatch' });
  });
});

describe('concurrent appends', () => {
  it('stores 300 events once each, contiguous, from 3 writers with every event delivered twice', async () => {
    const busy = 'co_concurrent_busy';
    const quiet = 'co_concurrent_quiet';
    const deliveries: AuditEvent[] = [];
    for (let n = 1; n <= 300; n += 1) deliveries.push(auditJob(busy, n), auditJob(busy, n));
    for (let n = 1; n <= 40; n += 1) deliveries.push(auditJob(quiet, n), auditJob(quiet, n));
    // Fisher-Yates: duplicates and both companies interleave in any order.
    for (let i = deliveries.length - 1; i > 0; i -= 1) {
      const j = Math.floor(Math.random() * (i + 1));
      [deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!];
    }

    // A database of its own (FerretDB scans the whole collection for the head query, so a small
    // collection keeps this fast), opened three times like three worker processes, indexes and all.
    const dbName = `${ctx.db.connection.name}_conc`;
    const config = { ...ctx.config, mongodbUri: withDatabaseName(ctx.config.mongodbUri, dbName) };
    const writers: Database[] = [];
    const results: AppendResult[] = [];
    try {
      for (let i = 0; i < 3; i += 1) writers.push(await openDatabase(config));
      let next = 0;
      const lanes = writers.flatMap(({ auditTrail }) =>
        Array.from({ length: WRITER_CONCURRENCY }, async () => {
          while (next < deliveries.length) {
            const job = deliveries[next];
            next += 1;
            results.push(await auditTrail.append(job!));
          }
        }),
      );
      await Promise.all(lanes);

      expect(results).toHaveLength(680);
      expect(results.filter((r) => !r.duplicate)).toHaveLength(340);
      const events = ctx.rawMongo.db(dbName).collection(AUDIT_EVENTS_COLLECTION);
      const stored = await events.find({ companyId: busy }).sort({ sequence: 1 }).toArray();
      expect(stored).toHaveLength(300);
      expect(stored.map((e) => e.sequence)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(new Set(stored.map((e) => e._id)).size).toBe(300);
      const trail = new AuditTrail(ctx.rawMongo.db(dbName));
      expect(await trail.verify(busy, signer.publicKey)).toMatchObject({
        ok: true,
        checked: 300,
        head: { sequence: 300 },
      });

      const quietChain = await events.find({ companyId: quiet }).sort({ sequence: 1 }).toArray();
      expect(quietChain.map((e) => e.sequence)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect(quietChain[0]?.prevHash).toBe(GENESIS_HASH);
      expect(await trail.verify(quiet, signer.publicKey)).toMatchObject({ ok: true, checked: 40 });
    } finally {
      await Promise.all(writers.map((writer) => writer.close()));
      await ctx.rawMongo.db(dbName).dropDatabase();
    }
  }, 300_000);
});

describe('batches', () => {
  it('appends a batch job of two companies as consecutive events of each chain, and tells the webhook hook of each', async () => {
    const one = 'co_batch_one';
    const two = 'co_batch_two';
    await appendChain(one, 2);
    const told: string[] = [];
    const events = [auditJob(one, 3), auditJob(two, 1), auditJob(one, 4), auditJob(two, 2), auditJob(one, 5)];
    const job = { data: { events } } as unknown as Job<AuditJob>;
    const results = await processAuditEvent(job, {
      auditTrail: ctx.db.auditTrail,
      logger: ctx.logger,
      onAppended: async (event) => told.push(event.eventId),
    });
    expect(results.map((r) => [r.eventId, r.sequence, r.duplicate])).toEqual([
      [`evt-${one}-3`, 3, false],
      [`evt-${one}-4`, 4, false],
      [`evt-${one}-5`, 5, false],
      [`evt-${two}-1`, 1, false],
      [`evt-${two}-2`, 2, false],
    ]);
    expect(told).toEqual(events.map((event) => event.eventId));
    expect((await rawChain(one)).map((e) => e._id)).toEqual([1, 2, 3, 4, 5].map((n) => `evt-${one}-${n}`));
    expect(await verify(one)).toMatchObject({ ok: true, checked: 5 });
    expect(await verify(two)).toMatchObject({ ok: true, checked: 2 });

    // Delivered again (a retry after a crash that came after the write): nothing is stored twice.
    const again = await processAuditEvent(job, { auditTrail: ctx.db.auditTrail, logger: ctx.logger });
    expect(again.every((r) => r.duplicate)).toBe(true);
    expect(await verify(one)).toMatchObject({ ok: true, checked: 5 });
  });

  it('a chain write the database never answers fails its appends after the stall limit; the next write goes on', async () => {
    const companyId = 'co_batch_stalled';
    await appendChain(companyId, 2);
    // This process's trail on the same database, with a short stall limit; its first write is sent down a connection
    // that never answers (a hung socket: the database neither replies nor closes it).
    const trail = new AuditTrail(ctx.rawMongo.db(), { stallMs: 300 });
    const insertMany = jest
      .spyOn(trail.events, 'insertMany')
      .mockImplementationOnce(() => new Promise(() => undefined));
    await expect(trail.appendMany(companyId, [auditJob(companyId, 3)])).rejects.toThrow(
      `the audit chain write of ${companyId} did not finish within 300 ms`,
    );
    // Sent again with what came next, as a retried job does: written from the stored head, nothing lost or doubled.
    const results = await trail.appendMany(companyId, [auditJob(companyId, 3), auditJob(companyId, 4)]);
    expect(results.map((r) => [r.sequence, r.duplicate])).toEqual([
      [3, false],
      [4, false],
    ]);
    expect(insertMany).toHaveBeenCalledTimes(2);
    expect((await rawChain(companyId)).map((e) => e.sequence)).toEqual([1, 2, 3, 4]);
    expect(await verify(companyId)).toMatchObject({ ok: true, checked: 4 });
  });

  it('finishes a batch whose first part another process stored before it crashed, and one whose place was taken', async () => {
    const companyId = 'co_batch_crash';
    // A second "process" on the same database: its own head cache and group commit.
    const other = await openDatabase(ctx.config);
    try {
      await other.auditTrail.appendMany(companyId, [auditJob(companyId, 1), auditJob(companyId, 2)]);
      // This process' head cache knows nothing of them: its batch takes places 1.. and is refused, then finds 1 and 2.
      const results = await ctx.db.auditTrail.appendMany(
        companyId,
        [1, 2, 3, 4].map((n) => auditJob(companyId, n)),
      );
      expect(results.map((r) => [r.sequence ?? null, r.duplicate])).toEqual([
        [null, true],
        [null, true],
        [3, false],
        [4, false],
      ]);
      // The other process' cached head is stale now: its next batch loses the race for place 3 and goes on from 5.
      const later = await other.auditTrail.appendMany(
        companyId,
        [5, 6].map((n) => auditJob(companyId, n)),
      );
      expect(later.map((r) => r.sequence)).toEqual([5, 6]);
    } finally {
      await other.close();
    }
    expect((await rawChain(companyId)).map((e) => e.sequence)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(await verify(companyId)).toMatchObject({ ok: true, checked: 6 });
  });

  it('queues an outcome of several events as one job, and one event under the job id every emitter uses', async () => {
    const companyId = 'co_batch_queue';
    const queue = new Queue<AuditJob>(`batch-${Date.now()}`, { connection: ctx.redis, prefix: ctx.config.queuePrefix });
    try {
      await enqueueAuditEvents(queue, [auditJob(companyId, 1), auditJob(companyId, 2)]);
      await enqueueAuditEvents(queue, [auditJob(companyId, 1), auditJob(companyId, 2)]);
      await enqueueAuditEvents(queue, [auditJob(companyId, 3)]);
      const jobs = await queue.getJobs(['waiting']);
      expect(jobs.map((j) => j.name).sort()).toEqual(['append', 'append-batch']);
      expect(jobs.find((j) => j.name === 'append')!.id).toBe(`audit-evt-${companyId}-3`);
      expect(eventsOfAuditJob(jobs.find((j) => j.name === 'append-batch')!.data).map((e) => e.eventId)).toEqual([
        `evt-${companyId}-1`,
        `evt-${companyId}-2`,
      ]);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

describe("an outcome's events recorded from its own job (a charge, a renewal)", () => {
  const outage = { appendMany: () => Promise.reject(new Error('connection refused')) };

  async function withQueue(name: string, test: (queue: Queue<AuditJob>) => Promise<void>): Promise<void> {
    const queue = new Queue<AuditJob>(`${name}-${Date.now()}`, {
      connection: ctx.redis,
      prefix: ctx.config.queuePrefix,
    });
    try {
      await test(queue);
    } finally {
      await queue.obliterate({ force: true });
      await queue.close();
    }
  }

  it('are appended in the job, in order and once however often it sends them, with no audit job', async () => {
    const companyId = 'co_outcome_inline';
    await withQueue('inline', async (queue) => {
      const told: string[] = [];
      const queued: unknown[] = [];
      const send = appendOrQueueAuditEvents({
        auditTrail: ctx.db.auditTrail,
        onAppended: async (event) => {
          told.push(event.eventId);
        },
        queue: (events) => enqueueAuditEvents(queue, events),
        onQueued: (error) => queued.push(error),
      });
      const events = [1, 2, 3].map((n) => auditJob(companyId, n));
      await send(events);
      // A retried job sends the same events again: stored once, told again (the webhook hook is idempotent).
      await send(events);
      expect((await rawChain(companyId)).map((e) => [e._id, e.sequence])).toEqual(
        events.map((event, i) => [event.eventId, i + 1]),
      );
      expect(await verify(companyId)).toMatchObject({ ok: true, checked: 3 });
      expect(told).toEqual([...events, ...events].map((event) => event.eventId));
      expect(queued).toEqual([]);
      expect(await queue.count()).toBe(0);
    });
  });

  it('are queued as one audit job when the append fails, which the audit worker appends once', async () => {
    const companyId = 'co_outcome_queued';
    await withQueue('fallback', async (queue) => {
      const queued: unknown[] = [];
      const send = appendOrQueueAuditEvents({
        auditTrail: outage,
        queue: (events) => enqueueAuditEvents(queue, events),
        onQueued: (error) => queued.push(error),
      });
      const events = [1, 2].map((n) => auditJob(companyId, n));
      await send(events);
      expect(queued).toEqual([new Error('connection refused')]);
      expect(await rawChain(companyId)).toEqual([]);
      const [job, ...others] = await queue.getJobs(['waiting']);
      expect(others).toEqual([]);
      expect(eventsOfAuditJob(job!.data).map((event) => event.eventId)).toEqual(events.map((e) => e.eventId));
      await processAuditEvent(job!, { auditTrail: ctx.db.auditTrail, logger: ctx.logger });
      expect((await rawChain(companyId)).map((e) => [e._id, e.sequence])).toEqual([
        [events[0]!.eventId, 1],
        [events[1]!.eventId, 2],
      ]);
    });
  });

  it('fail, for the job to be retried, when neither the trail nor the queue takes them', async () => {
    const companyId = 'co_outcome_lost';
    const send = appendOrQueueAuditEvents({
      auditTrail: outage,
      queue: () => Promise.reject(new Error('redis unavailable')),
      onQueued: () => undefined,
    });
    await expect(send([auditJob(companyId, 1)])).rejects.toThrow('redis unavailable');
    expect(await rawChain(companyId)).toEqual([]);
  });
});

describe('retention', () => {
  let auditQueue: Queue<AuditJob>;
  let worker: Worker<AuditJob, AppendResult[]>;
  const yearsAgo = (years: number) => new Date(Date.now() - years * 365 * DAY_MS);

  beforeAll(async () => {
    auditQueue = ctx.queues.audit;
    worker = createAuditWorker({
      connection: ctx.redis,
      prefix: ctx.config.queuePrefix,
      concurrency: 4,
      auditTrail: ctx.db.auditTrail,
      logger: ctx.logger,
    });
    await worker.waitUntilReady();
  });
  afterAll(async () => {
    await worker?.close();
  });

  const purge = () =>
    purgeExpiredAuditEvents({
      auditQueue,
      auditTrail: ctx.db.auditTrail,
      anchorSigner: signer,
      logger: ctx.logger,
      retentionDays: ctx.config.audit.retentionDays,
    });

  it('removes expired events behind a signed checkpoint, records the purge, and does nothing the second time', async () => {
    const companyId = 'co_retention';
    expect(ctx.config.audit.retentionDays).toBe(6 * 365);
    await appendChain(companyId, 10, 1, yearsAgo(7));
    await appendChain(companyId, 5, 11);
    const lastRemoved = await rawEvent(companyId, 10);

    expect(await purge()).toEqual({ companies: 1, removed: 10 });
    const purgedId = `evt-audit-purged-${companyId}-10`;
    const record = await waitFor(
      () => rawEvents.findOne({ _id: purgedId as never }),
      (event) => event !== null,
      { what: 'the audit.purged event to be appended' },
    );
    expect(record).toMatchObject({
      companyId,
      sequence: 16,
      action: 'audit.purged',
      outcome: 'success',
      actor: { type: 'system', id: 'audit-retention' },
      resource: { type: 'audit_trail', id: companyId },
      changes: [
        { field: 'removedThroughSequence', before: null, after: '10' },
        { field: 'removedEvents', before: null, after: '10' },
      ],
    });
    expect((await rawChain(companyId)).map((e) => e.sequence)).toEqual([11, 12, 13, 14, 15, 16]);
    expect(await rawAnchors.findOne({ companyId, kind: 'checkpoint' })).toMatchObject({
      sequence: 10,
      hash: lastRemoved.hash,
      keyId: signer.keyId,
    });

    const report = await verify(companyId);
    expect(report).toMatchObject({
      ok: true,
      checked: 6,
      start: { sequence: 10, hash: lastRemoved.hash, from: 'checkpoint' },
      head: { sequence: 16 },
    });

    const jobsBefore = await auditQueue.getJobCountByTypes('completed', 'waiting', 'active', 'delayed', 'failed');
    expect(await purge()).toEqual({ companies: 0, removed: 0 });
    expect(await auditQueue.getJobCountByTypes('completed', 'waiting', 'active', 'delayed', 'failed')).toBe(jobsBefore);
    expect(await rawEvents.countDocuments({ companyId })).toBe(6);
    expect(await rawAnchors.countDocuments({ companyId, kind: 'checkpoint' })).toBe(1);
    expect((await verify(companyId)).ok).toBe(true);
  });

  it('never removes the head, even when every event of a chain has expired', async () => {
    const companyId = 'co_retention_all_old';
    await appendChain(companyId, 5, 1, yearsAgo(8));
    const head = await rawEvent(companyId, 5);

    expect(await purge()).toEqual({ companies: 1, removed: 4 });
    await waitFor(
      () => rawEvents.countDocuments({ companyId, action: 'audit.purged' }),
      (count) => count === 1,
      { what: 'the audit.purged event to be appended' },
    );
    const chain = await rawChain(companyId);
    expect(chain.map((e) => e.sequence)).toEqual([5, 6]);
    expect(chain[0]?.hash).toBe(head.hash);
    expect(chain[1]?.prevHash).toBe(head.hash);
    expect(await verify(companyId)).toMatchObject({ ok: true, checked: 2, start: { sequence: 4, from: 'checkpoint' } });
  });
});

describe('append-only', () => {
  it('refuses every mutation through the AuditEvent model and changes nothing', async () => {
    const companyId = 'co_append_only';
    await appendChain(companyId, 3);
    const before = await rawEvents.find({}).sort({ companyId: 1, sequence: 1 }).toArray();
    const { AuditEvent } = ctx.db.models;
    const id = `evt-${companyId}-2`;
    const fresh = {
      ...(await AuditEvent.findById(id).lean()),
      _id: `evt-${companyId}-forged`,
      sequence: 4,
    };
    const refused = /append-only|appended by the audit trail only/;

    const attempts: Array<[string, () => Promise<unknown>]> = [
      ['updateOne', () => AuditEvent.updateOne({ _id: id }, { $set: { outcome: 'denied' } }).exec()],
      ['updateMany', () => AuditEvent.updateMany({ companyId }, { $set: { outcome: 'denied' } }).exec()],
      ['findOneAndUpdate', () => AuditEvent.findOneAndUpdate({ _id: id }, { $set: { outcome: 'denied' } }).exec()],
      ['findByIdAndUpdate', () => AuditEvent.findByIdAndUpdate(id, { $set: { outcome: 'denied' } }).exec()],
      ['findOneAndReplace', () => AuditEvent.findOneAndReplace({ _id: id }, { ...fresh, _id: id }).exec()],
      ['replaceOne', () => AuditEvent.replaceOne({ _id: id }, { ...fresh, _id: id }).exec()],
      ['deleteOne', () => AuditEvent.deleteOne({ _id: id }).exec()],
      ['deleteMany', () => AuditEvent.deleteMany({ companyId }).exec()],
      ['findOneAndDelete', () => AuditEvent.findOneAndDelete({ _id: id }).exec()],
      ['findByIdAndDelete', () => AuditEvent.findByIdAndDelete(id).exec()],
      ['find().deleteMany()', () => AuditEvent.find({ companyId }).deleteMany().exec()],
      ['create', () => AuditEvent.create(fresh)],
      ['new().save()', () => new AuditEvent(fresh).save()],
      ['insertOne', () => AuditEvent.insertOne(fresh)],
      ['insertMany', () => AuditEvent.insertMany([fresh])],
      [
        'bulkWrite',
        () =>
          AuditEvent.bulkWrite([
            { updateOne: { filter: { _id: id }, update: { $set: { outcome: 'denied' } } } },
            { deleteOne: { filter: { _id: id } } },
          ]),
      ],
      [
        'document.save()',
        async () => {
          const doc = await AuditEvent.findById(id).orFail();
          doc.outcome = 'denied';
          return doc.save();
        },
      ],
      [
        'document.updateOne()',
        async () => (await AuditEvent.findById(id).orFail()).updateOne({ $set: { outcome: 'denied' } }),
      ],
      ['document.deleteOne()', async () => (await AuditEvent.findById(id).orFail()).deleteOne()],
      [
        'bulkSave',
        async () => {
          const doc = await AuditEvent.findById(id).orFail();
          doc.outcome = 'denied';
          // bulkSave's types assume ObjectId ids; audit events have string ids.
          return AuditEvent.bulkSave([doc, new AuditEvent(fresh)] as unknown as Parameters<
            typeof AuditEvent.bulkSave
          >[0]);
        },
      ],
    ];

    const accepted: string[] = [];
    for (const [name, attempt] of attempts) {
      const outcome = await attempt().then(
        () => 'accepted',
        (error: Error) => (refused.test(error.message) ? 'refused' : `failed otherwise: ${error.message}`),
      );
      if (outcome !== 'refused') accepted.push(`${name}: ${outcome}`);
    }
    expect(accepted).toEqual([]);

    expect(await rawEvents.find({}).sort({ companyId: 1, sequence: 1 }).toArray()).toEqual(before);
    expect(await verify(companyId)).toMatchObject({ ok: true, checked: 3 });
  });

  it('has exactly two writes to audit_events in the source: appendChain’s insertMany and purgeBefore’s deleteMany', () => {
    const dirs = ['api', 'workers', 'models', 'queues', 'domain', 'platform', 'cli'];
    const files = dirs.flatMap((dir) => tsFilesUnder(dir));
    expect(files).toEqual(expect.arrayContaining(['models/audit-trail.ts', 'workers/audit.worker.ts']));

    const WRITE =
      /\b(?:AuditEvent|events)\s*\.\s*(?:collection\s*\.\s*)?(update\w*|replace\w*|delete\w*|remove\w*|insert\w*|bulk\w*|findOneAnd\w*|findByIdAnd\w*|create|drop\w*)\s*\(/g;
    const METHOD = /^\s{2}(?:private\s+)?(?:async\s+)?(\w+)\s*\(/gm;
    const writes: string[] = [];
    const otherHandles = new Set<string>();
    for (const file of files) {
      const source = readFileSync(join(ROOT, file), 'utf8');
      for (const match of source.matchAll(WRITE)) {
        const methods = [...source.slice(0, match.index).matchAll(METHOD)];
        writes.push(`${file} ${methods.at(-1)?.[1] ?? '?'} ${match[1]}`);
      }
      // Any other handle on the collection would be a way around both the model's guard and this scan.
      for (const match of source.matchAll(/AUDIT_EVENTS_COLLECTION|['"`]audit_events['"`]/g)) {
        const line = source.slice(source.lastIndexOf('\n', match.index) + 1, source.indexOf('\n', match.index));
        otherHandles.add(`${file}: ${line.trim()}`);
      }
    }
    expect(writes.sort()).toEqual([
      'models/audit-trail.ts appendChain insertMany',
      'models/audit-trail.ts purgeBefore deleteMany',
    ]);
    expect([...otherHandles].sort()).toEqual([
      "models/audit-event.model.ts: export const AUDIT_EVENTS_COLLECTION = 'audit_events';",
      'models/audit-event.model.ts: { versionKey: false, collection: AUDIT_EVENTS_COLLECTION },',
      "models/audit-trail.ts: import { AUDIT_EVENTS_COLLECTION } from './audit-event.model';",
      'models/audit-trail.ts: this.events = db.collection<StoredAuditEvent>(AUDIT_EVENTS_COLLECTION);',
    ]);
  });
});
