import { EventEmitter } from 'node:events';
import { DelayedError, UnrecoverableError, type Job, type Worker } from 'bullmq';
import { CapturedLogs } from '../support/harness';
import { createLogger } from '../../platform/logger';
import { logJobLifecycle, reasonCodeError, runJob, type JobContext } from '../../workers/queue-worker';

const PHI_MESSAGE = 'payment pay_01ABC for Margaret Holloway (dob 1957-03-14) failed';

function setup() {
  const logs = new CapturedLogs();
  const logger = createLogger({ level: 'debug', name: 'queue-worker-test' }, logs);
  const lines = () => logs.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logs, logger, lines };
}

/** A job as BullMQ hands it to a processor: enqueued at 1 000, started at 1 250, on its second attempt. */
function fakeJob(data: unknown, overrides: Partial<Job> = {}): Job {
  return {
    id: 'charge-pay_01ABC',
    name: 'charge',
    data,
    timestamp: 1_000,
    processedOn: 1_250,
    attemptsStarted: 2,
    attemptsMade: 1,
    ...overrides,
  } as unknown as Job;
}

/** Runs `thrown` through the wrapper and returns what BullMQ would get. */
async function failureFor(thrown: unknown): Promise<Error> {
  const { logger } = setup();
  const failing = () => Promise.reject(thrown);
  return runJob('charges', fakeJob({ paymentId: 'pay_01ABC' }), failing, { logger }).then(
    () => {
      throw new Error('the processor should have failed');
    },
    (error: Error) => error,
  );
}

describe('per-job context', () => {
  it('hands the processor a child logger with queue, job id, job name, attempt and the payload’s request id', async () => {
    const { logger, lines } = setup();
    let context: JobContext | undefined;
    const result = await runJob(
      'charges',
      fakeJob({ paymentId: 'pay_01ABC', requestId: 'req-7' }),
      async (_job, _deps, ctx) => {
        context = ctx;
        ctx.logger.info('charging');
        return 'done';
      },
      { logger },
    );
    expect(result).toBe('done');
    expect(context).toBeDefined();
    expect(lines()).toEqual([
      expect.objectContaining({
        queue: 'charges',
        jobId: 'charge-pay_01ABC',
        jobName: 'charge',
        attempt: 2,
        requestId: 'req-7',
        msg: 'charging',
      }),
    ]);
  });

  it('leaves out a request id the payload does not carry, and counts the attempt from attemptsMade without starts', async () => {
    const { logger, lines } = setup();
    await runJob(
      'stripe-events',
      fakeJob({ eventId: 'evt_1' }, { attemptsStarted: 0, attemptsMade: 0 }),
      async (_job, _deps, ctx) => ctx.logger.info('applying'),
      { logger },
    );
    expect(lines()[0]).toMatchObject({ queue: 'stripe-events', attempt: 1 });
    expect(lines()[0]).not.toHaveProperty('requestId');
  });
});

describe('a failed job’s reason', () => {
  it('is the error’s own code when it is a code', async () => {
    const failure = await failureFor(Object.assign(new Error(PHI_MESSAGE), { code: 'card_declined' }));
    expect(failure.message).toBe('card_declined');
  });

  it.each([
    ['no code', new Error(PHI_MESSAGE)],
    ['a numeric code (a MongoDB error)', Object.assign(new Error(PHI_MESSAGE), { code: 11000 })],
    ['an upper-case code (a socket error)', Object.assign(new Error(PHI_MESSAGE), { code: 'ECONNREFUSED' })],
    ['a code with spaces', Object.assign(new Error(PHI_MESSAGE), { code: 'declined for Margaret' })],
    ['a thrown string', PHI_MESSAGE],
  ])('is internal_error for %s, and the message reaches neither the reason nor the stack', async (_what, thrown) => {
    const failure = await failureFor(thrown);
    expect(failure.message).toBe('internal_error');
    expect(failure.stack).not.toContain('Margaret');
    expect(failure.stack?.split('\n')[0]).toMatch(/^\w+: internal_error$/);
  });

  it('keeps the stack frames (code locations) of the original error', async () => {
    const original = new Error(PHI_MESSAGE);
    const failure = await failureFor(original);
    const frames = (original.stack ?? '').split('\n').filter((line) => line.startsWith('    at '));
    expect(frames.length).toBeGreaterThan(0);
    expect(failure.stack).toContain(frames[0]);
  });

  it('stays unrecoverable (no retry) when the processor gave up, and stays retryable otherwise', async () => {
    class PaymentFailedError extends UnrecoverableError {}
    const unrecoverable = await failureFor(new PaymentFailedError(PHI_MESSAGE));
    expect(unrecoverable).toBeInstanceOf(UnrecoverableError);
    expect(unrecoverable.message).toBe('internal_error');

    const named = await failureFor(Object.assign(new Error(PHI_MESSAGE), { name: 'UnrecoverableError' }));
    expect(named).toBeInstanceOf(UnrecoverableError);

    const transient = await failureFor(Object.assign(new Error(PHI_MESSAGE), { code: 'rate_limited' }));
    expect(transient).not.toBeInstanceOf(UnrecoverableError);
    expect(transient.name).not.toBe('UnrecoverableError');
    expect(transient.message).toBe('rate_limited');
  });

  it('lets BullMQ’s own control-flow errors through untouched', async () => {
    const delayed = new DelayedError();
    expect(await failureFor(delayed)).toBe(delayed);
  });
});

describe('job lifecycle log lines', () => {
  function fakeWorker(): Worker & EventEmitter {
    return Object.assign(new EventEmitter(), { name: 'charges' }) as unknown as Worker & EventEmitter;
  }

  it('logs active with the queued time, and completed with queued and execution time', () => {
    const { logger, lines } = setup();
    const worker = fakeWorker();
    logJobLifecycle(worker, logger);
    worker.emit('active', fakeJob({ paymentId: 'pay_01ABC', requestId: 'req-7' }), 'waiting');
    worker.emit('completed', fakeJob({ paymentId: 'pay_01ABC', requestId: 'req-7' }, { finishedOn: 1_650 }), {});
    expect(lines()).toEqual([
      expect.objectContaining({ msg: 'job active', queue: 'charges', jobId: 'charge-pay_01ABC', queuedMs: 250 }),
      expect.objectContaining({
        msg: 'job completed',
        queue: 'charges',
        attempt: 2,
        requestId: 'req-7',
        queuedMs: 250,
        executionMs: 400,
      }),
    ]);
  });

  // Issue 20: an idle `npm run dev` printed every scheduler run (outbox sweep, anchors, reconcile); they say at info
  // what they did when they did something, and their lifecycle lines go to debug.
  it('logs the lifecycle of scheduler jobs at debug, so an idle system prints nearly nothing', () => {
    const { logger, lines } = setup();
    const worker = fakeWorker();
    logJobLifecycle(worker, logger);
    const sweep = fakeJob({}, { id: 'repeat:outbox-sweep:1700', name: 'outbox-sweep', repeatJobKey: 'outbox-sweep' });
    worker.emit('active', sweep, 'waiting');
    worker.emit('completed', { ...sweep, finishedOn: 1_300 }, {});
    expect(lines().map((line) => [line.msg, line.level])).toEqual([
      ['job active', 20],
      ['job completed', 20],
    ]);
  });

  it('logs a failed attempt with its reason code and durations; the original message goes to the log only', () => {
    const { logger, lines } = setup();
    const worker = fakeWorker();
    logJobLifecycle(worker, logger);
    const failure = reasonCodeError(
      Object.assign(new Error('gateway said: card 4242 declined'), { code: 'card_declined' }),
    );
    worker.emit('failed', fakeJob({ paymentId: 'pay_01ABC' }, { finishedOn: 1_300 }), failure, 'active');
    const [line] = lines();
    expect(line).toMatchObject({
      msg: 'job attempt failed',
      level: 40,
      queue: 'charges',
      jobId: 'charge-pay_01ABC',
      reason: 'card_declined',
      queuedMs: 250,
      executionMs: 50,
      err: { message: 'gateway said: card 4242 declined' },
    });
  });

  it('logs a failure that did not come through the wrapper with a reason code too', () => {
    const { logger, lines } = setup();
    const worker = fakeWorker();
    logJobLifecycle(worker, logger);
    worker.emit('failed', fakeJob({}), new Error('job stalled more than allowable limit'), 'active');
    expect(lines()[0]).toMatchObject({ msg: 'job attempt failed', reason: 'internal_error' });
  });

  it('logs a stalled job with how long it had been queued and running', async () => {
    const { logger, lines } = setup();
    const worker = fakeWorker();
    const now = Date.now();
    const stalled = fakeJob({ requestId: 'req-9' }, { processedOn: now - 30_000, timestamp: now - 31_000 });
    logJobLifecycle(worker, logger, async (jobId) => (jobId === stalled.id ? stalled : undefined));
    worker.emit('stalled', stalled.id, 'active');
    worker.emit('stalled', 'charge-gone', 'active');
    await new Promise((resolve) => setImmediate(resolve));
    const [known, gone] = lines();
    expect(known).toMatchObject({ msg: 'job stalled', level: 40, jobId: stalled.id, requestId: 'req-9' });
    expect(known?.queuedMs).toBeGreaterThanOrEqual(1_000);
    expect(known?.executionMs).toBeGreaterThanOrEqual(30_000);
    expect(gone).toMatchObject({ msg: 'job stalled', queue: 'charges', jobId: 'charge-gone' });
  });
});
