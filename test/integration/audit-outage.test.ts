import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, type Worker } from 'bullmq';
import { AUDIT_EVENTS_COLLECTION } from '../../models/audit-event.model';
import type { AppendResult } from '../../models/audit-trail';
import { loadAnchorSigner } from '../../models/anchor-key';
import { createRedisConnection, type RedisClient } from '../../platform/redis';
import { type AuditEventInput } from '../../domain/audit-event';
import { enqueueAuditEvent, type AuditJob } from '../../queues/audit.queue';
import { createAuditWorker } from '../../workers/audit.worker';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { freePort } from '../../devtools/ports';

const FERRETDB_BIN =
  process.env.FERRETDB_BIN ??
  join(process.env.SERVICES_BIN_DIR || join(homedir(), '.cache', 'hipaa-billing', 'bin'), 'ferretdb');
const COMPANY = 'co_outage';
const BATCH = 30;
/**
 * Long enough that the worker meets the dead server, short because audit retries back off exponentially
 * from 1 s. Under the driver's 10 s server selection timeout the driver waits the outage out; set
 * AUDIT_OUTAGE_MS above 10 000 to make appends fail and BullMQ retry them instead.
 */
const OUTAGE_MS = Number(process.env.AUDIT_OUTAGE_MS ?? 3_000);

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** A FerretDB of this test's own, so stopping it hurts no other test; same port and data on every start. */
class PrivateFerretDb {
  private child?: ChildProcess;
  private readonly logFile: string;

  constructor(
    readonly port: number,
    private readonly dir: string,
  ) {
    mkdirSync(join(dir, 'data'), { recursive: true });
    mkdirSync(join(dir, 'state'), { recursive: true });
    this.logFile = join(dir, 'ferretdb.log');
  }

  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/hipaa_billing`;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const log = openSync(this.logFile, 'a');
    const child = spawn(
      FERRETDB_BIN,
      [
        '--handler=sqlite',
        `--sqlite-url=file:${join(this.dir, 'data')}/`,
        `--listen-addr=127.0.0.1:${this.port}`,
        '--debug-addr=-',
        `--state-dir=${join(this.dir, 'state')}`,
        '--telemetry=disable',
        '--log-level=warn',
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    this.child = child;
    // Should jest exit without afterAll (a crash, a timeout), leave no server behind.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => process.off('exit', killOnExit));
    await waitFor(
      async () => {
        if (!this.running) throw new Error(`FerretDB exited at start:\n${this.logTail()}`);
        return portAnswers(this.port);
      },
      Boolean,
      { timeoutMs: 20_000, intervalMs: 50, what: `FerretDB to listen on port ${this.port}` },
    );
  }

  /** SIGTERM, as an orchestrator stops a server; SIGKILL only if it will not go. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  logTail(): string {
    try {
      return readFileSync(this.logFile, 'utf8').split('\n').slice(-20).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

function event(n: number): AuditEventInput {
  return {
    eventId: `evt-outage-${n}`,
    companyId: COMPANY,
    action: 'payment.requested',
    outcome: 'success',
    actor: { type: 'service', id: 'svc_ingress' },
    resource: { type: 'payment', id: `pay_outage_${n}` },
    requestId: `req_outage_${n}`,
    occurredAt: new Date().toISOString(),
  };
}

let dir: string;
let server: PrivateFerretDb;
let ctx: TestContext | undefined;
let workerRedis: RedisClient | undefined;
let worker: Worker<AuditJob, AppendResult[]> | undefined;
let auditQueue: Queue<AuditJob> | undefined;
const failedAttempts: string[] = [];

beforeAll(async () => {
  try {
    accessSync(FERRETDB_BIN, constants.X_OK);
  } catch {
    throw new Error(
      `The MongoDB outage test needs a FerretDB binary it can stop and start, and found none at ${FERRETDB_BIN}.\n` +
        'Run the tests with `npm test`, which builds it (or set FERRETDB_BIN to a FerretDB executable).',
    );
  }
  dir = mkdtempSync(join(tmpdir(), 'hb-ferretdb-outage-'));
  server = new PrivateFerretDb(await freePort(), dir);
  await server.start();

  // The harness derives the test database from MONGODB_URI; point it at the private server for this context only.
  const shared = process.env.MONGODB_URI;
  process.env.MONGODB_URI = server.uri;
  try {
    ctx = await createTestContext('audit_outage');
  } finally {
    process.env.MONGODB_URI = shared;
  }
  expect(ctx.config.mongodbUri).toContain(`127.0.0.1:${server.port}/`);

  workerRedis = createRedisConnection(ctx.config.redisUrl, 'worker');
  auditQueue = ctx.queues.audit;
  worker = createAuditWorker({
    connection: workerRedis,
    prefix: ctx.config.queuePrefix,
    concurrency: 5,
    auditTrail: ctx.db.auditTrail,
    logger: ctx.logger,
  });
  worker.on('failed', (job, error) => failedAttempts.push(`${job?.id} attempt ${job?.attemptsMade}: ${error.message}`));
  await worker.waitUntilReady();
}, 60_000);

afterAll(async () => {
  try {
    await worker?.close();
    await workerRedis?.quit();
    // Dropping the test database needs the server up, whatever state a failed test left it in.
    if (ctx && !server.running) await server.start();
    await ctx?.close();
  } finally {
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);

describe('audit events across a MongoDB outage', () => {
  it('stores every event exactly once, in one contiguous verified chain, after the server comes back', async () => {
    const context = ctx!;
    const queue = auditQueue!;
    const events = context.rawMongo.db().collection(AUDIT_EVENTS_COLLECTION);
    const stored = () => events.countDocuments({ companyId: COMPANY });

    // Stop the server part-way through the first batch: the rest is enqueued while it shuts down.
    const half = BATCH / 2;
    for (let n = 1; n <= half; n += 1) await enqueueAuditEvent(queue, event(n));
    await waitFor(stored, (count) => count >= 5, { what: 'the first events to be stored' });
    const stopping = server.stop();
    for (let n = half + 1; n <= BATCH; n += 1) await enqueueAuditEvent(queue, event(n));
    await stopping;
    const stoppedAt = Date.now();
    const completedAtStop = await queue.getCompletedCount();
    expect(await portAnswers(server.port)).toBe(false);

    // Redis is up: the api side keeps enqueuing while MongoDB is down.
    for (let n = BATCH + 1; n <= 2 * BATCH; n += 1) await enqueueAuditEvent(queue, event(n));
    await waitFor(
      async () => ({
        elapsed: Date.now() - stoppedAt,
        active: await queue.getActiveCount(),
      }),
      ({ elapsed, active }) => elapsed >= OUTAGE_MS && active > 0,
      { timeoutMs: OUTAGE_MS + 10_000, what: 'the worker to be stuck on the stopped server' },
    );
    // Nothing can be stored while the server is down.
    expect(await queue.getCompletedCount()).toBe(completedAtStop);
    const outageMs = Date.now() - stoppedAt;

    await server.start();
    const counts = await waitFor(
      () => queue.getJobCounts('completed', 'failed', 'active', 'waiting', 'delayed'),
      (c) => c.completed === 2 * BATCH,
      { timeoutMs: 90_000, intervalMs: 200, what: `all ${2 * BATCH} audit jobs to complete after the restart` },
    );
    expect(counts).toMatchObject({ completed: 2 * BATCH, failed: 0, active: 0, waiting: 0, delayed: 0 });

    const chain = await events.find({ companyId: COMPANY }).sort({ sequence: 1 }).toArray();
    expect(chain.map((e) => e._id).sort()).toEqual(
      Array.from({ length: 2 * BATCH }, (_, i) => `evt-outage-${i + 1}`).sort(),
    );
    expect(chain.map((e) => e.sequence)).toEqual(Array.from({ length: 2 * BATCH }, (_, i) => i + 1));
    const signer = loadAnchorSigner(context.config.audit.anchorKeyFile, true);
    expect(await context.db.auditTrail.verify(COMPANY, signer.publicKey)).toMatchObject({
      ok: true,
      checked: 2 * BATCH,
      head: { sequence: 2 * BATCH },
    });
    // The mongoose connection (with its decrypting client) healed on its own too.
    expect(await context.db.models.AuditEvent.countDocuments({ companyId: COMPANY })).toBe(2 * BATCH);
    // Past the driver's server selection timeout the appends fail, and BullMQ's retries bring them home.
    if (outageMs > 10_000) expect(failedAttempts.length).toBeGreaterThan(0);
  }, 150_000);
});
