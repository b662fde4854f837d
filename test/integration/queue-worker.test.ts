import { Queue, UnrecoverableError, type Job } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import { createRedisConnection, type RedisClient } from '../../platform/redis';
import { createQueues, type Queues } from '../../queues';
import { AUDIT_JOB_NAME, enqueueAuditEvent } from '../../queues/audit.queue';
import { chargeJobId, enqueueCharge } from '../../queues/charges.queue';
import { QUEUE_NAMES } from '../../queues/names';
import { startWorkers } from '../../workers/main';
import { WORKERS, type WorkerContext } from '../../workers/registry';
import { createTestContext, waitFor, type TestContext } from '../support/harness';

const PHI = 'Margaret Holloway';
const COMPANY = 'co_queue_worker';

let ctx: TestContext;
let connection: RedisClient;
let queues: Queues;

beforeAll(async () => {
  ctx = await createTestContext('queue_worker');
  connection = createRedisConnection(ctx.config.redisUrl, 'worker');
  queues = createQueues(ctx.redis, ctx.config.queuePrefix);
}, 60_000);

afterAll(async () => {
  await Promise.all(Object.values(queues ?? {}).map((queue: Queue) => queue.close()));
  await connection?.quit();
  await ctx?.close();
}, 60_000);

function auditEvent(eventId: string): AuditEventInput {
  return {
    eventId,
    companyId: COMPANY,
    action: 'payment.requested',
    outcome: 'success',
    actor: { type: 'service', id: 'svc_ingress' },
    resource: { type: 'payment', id: `pay_${eventId}` },
    requestId: `req-${eventId}`,
    occurredAt: new Date().toISOString(),
  };
}

const finished = (id: string) =>
  waitFor(
    () => queues.audit.getJob(id),
    (job) => Boolean(job?.finishedOn),
    { what: `job ${id} to finish` },
  ) as Promise<Job>;

describe('the job wrapper on a real worker', () => {
  it('records a reason code, never the message; retries what may pass and stops what cannot', async () => {
    // The registry's audit entry with an audit trail that fails on demand.
    const outcomes: Record<string, () => Promise<unknown>> = {
      'evt-ok': async () => ({ eventId: 'evt-ok', sequence: 1, duplicate: false }),
      'evt-transient': async () => {
        throw new Error(`insert of ${PHI}'s event timed out`);
      },
      'evt-gave-up': async () => {
        throw Object.assign(new UnrecoverableError(`chain of ${PHI} broken`), { code: 'chain_broken' });
      },
    };
    const context = {
      config: ctx.config,
      logger: ctx.logger,
      connection,
      db: {
        auditTrail: {
          appendMany: async (_companyId: string, events: Array<{ eventId: string }>) => [
            await outcomes[events[0]!.eventId]!(),
          ],
        },
      },
    } as unknown as WorkerContext;
    const worker = WORKERS.audit.start(context);
    try {
      const options = { attempts: 3, backoff: { type: 'fixed', delay: 10 } };
      await queues.audit.add(AUDIT_JOB_NAME, auditEvent('evt-ok') as never, { ...options, jobId: 'audit-ok' });
      await queues.audit.add(AUDIT_JOB_NAME, auditEvent('evt-transient') as never, {
        ...options,
        jobId: 'audit-transient',
      });
      await queues.audit.add(AUDIT_JOB_NAME, auditEvent('evt-gave-up') as never, {
        ...options,
        jobId: 'audit-gave-up',
      });
      await queues.audit.add(AUDIT_JOB_NAME, { eventId: 'evt-bad', patientName: PHI } as never, {
        ...options,
        jobId: 'audit-bad',
      });

      const ok = await finished('audit-ok');
      expect(await ok.getState()).toBe('completed');

      const transient = await finished('audit-transient');
      expect(await transient.getState()).toBe('failed');
      expect(transient.attemptsMade).toBe(3);
      expect(transient.failedReason).toBe('internal_error');

      const gaveUp = await finished('audit-gave-up');
      expect(await gaveUp.getState()).toBe('failed');
      expect(gaveUp.attemptsMade).toBe(1);
      expect(gaveUp.failedReason).toBe('chain_broken');

      const bad = await finished('audit-bad');
      expect(bad.attemptsMade).toBe(1);
      expect(bad.failedReason).toBe('invalid_payload');

      // What ops see on the dashboard carries no message: neither the reason nor the stack trace.
      for (const job of [transient, gaveUp, bad]) expect(JSON.stringify(job.stacktrace)).not.toContain(PHI);

      // The log has the lifecycle of each job, with durations, and the message for whoever reads the logs.
      const lines = ctx.logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
      const of = (jobId: string, msg: string) => lines.filter((line) => line.jobId === jobId && line.msg === msg);
      expect(of('audit-ok', 'job active')).toHaveLength(1);
      expect(of('audit-ok', 'job completed')[0]).toMatchObject({
        queue: 'audit',
        attempt: 1,
        requestId: 'req-evt-ok',
        queuedMs: expect.any(Number),
        executionMs: expect.any(Number),
      });
      const attempts = of('audit-transient', 'job attempt failed');
      expect(attempts.map((line) => line.attempt)).toEqual([1, 2, 3]);
      expect(attempts[0]).toMatchObject({ reason: 'internal_error', err: { message: expect.stringContaining(PHI) } });
      expect(of('audit-gave-up', 'job attempt failed')).toEqual([
        expect.objectContaining({ reason: 'chain_broken', executionMs: expect.any(Number) }),
      ]);
    } finally {
      await worker.close();
    }
  }, 60_000);
});

describe('a worker process serving a subset of the queues', () => {
  it('starts workers for the named queues only, and leaves the other queues’ jobs waiting', async () => {
    const running = await startWorkers(ctx.config, ctx.logger, ctx.db, { queues: [QUEUE_NAMES.audit] });
    try {
      expect(running.workers.map((worker) => worker.name)).toEqual(['audit']);
      const paymentId = 'pay_01HZX3J6K8QW2M4N5P6R7S8T9V';
      await enqueueCharge(queues.charges, { paymentId, requestId: 'req-subset' });
      await enqueueAuditEvent(queues.audit, auditEvent('evt-subset'));
      await waitFor(
        () => ctx.db.auditTrail.events.countDocuments({ _id: 'evt-subset' }),
        (count) => count === 1,
        { what: 'the audit event to be stored' },
      );
      expect(await (await queues.charges.getJob(chargeJobId(paymentId)))?.getState()).toBe('waiting');
      // Maintenance is not served here, so this process schedules none of it.
      expect(await queues.maintenance.getJobSchedulers()).toEqual([]);
    } finally {
      await running.stop();
    }
  }, 60_000);
});
