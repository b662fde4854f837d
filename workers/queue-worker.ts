import { jobDuration, jobFailures } from '../platform/metrics';
import { Job, RATE_LIMIT_ERROR, UnrecoverableError, Worker, type ConnectionOptions } from 'bullmq';
import type { Logger } from '../platform/logger';

/** Where a worker takes its jobs from, how many at once, and the process logger each job's logger derives from. */
export interface QueueWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
  logger: Logger;
}

/** What every processor gets besides its job and its dependencies. */
export interface JobContext {
  /** A child of the process logger with queue, job id, job name, attempt and the payload's request id. */
  logger: Logger;
}

export type JobProcessor<Data, Result, Deps> = (job: Job<Data>, deps: Deps, context: JobContext) => Promise<Result>;

/**
 * A BullMQ worker on queue `name` that hands each job, with `deps` and its
 * job context, to `process` (through `runJob`), and logs each job's lifecycle.
 */
export function createQueueWorker<Data, Result, Deps>(
  name: string,
  process: JobProcessor<Data, Result, Deps>,
  deps: Deps & QueueWorkerOptions,
): Worker<Data, Result> {
  const worker = new Worker<Data, Result>(name, (job) => runJob(name, job, process, deps), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
  });
  logJobLifecycle(worker, deps.logger);
  return worker;
}

/**
 * The one wrapper around every processor: builds the job's logger, runs the
 * processor, and turns what it throws into a failure whose message is a
 * reason code (see `reasonCodeError`), because BullMQ stores the message as
 * the job's `failedReason` in Redis, where the ops dashboard shows it.
 */
export async function runJob<Data, Result, Deps extends { logger: Logger }>(
  queue: string,
  job: Job<Data>,
  process: JobProcessor<Data, Result, Deps>,
  deps: Deps,
): Promise<Result> {
  const logger = jobLogger(deps.logger, queue, job);
  try {
    return await process(job, deps, { logger });
  } catch (error) {
    throw reasonCodeError(error);
  }
}

/** The attempt this job is on (1-based): BullMQ counts starts, and only finished attempts in `attemptsMade`. */
export function jobAttempt(job: Pick<Job, 'attemptsStarted' | 'attemptsMade'>): number {
  return job.attemptsStarted > 0 ? job.attemptsStarted : job.attemptsMade + 1;
}

/** The payload's request id, when it carries one (charges and refunds do): the thread from the api's request log. */
function requestIdOf(data: unknown): string | undefined {
  const requestId = typeof data === 'object' && data !== null ? (data as { requestId?: unknown }).requestId : undefined;
  return typeof requestId === 'string' ? requestId : undefined;
}

/** What every line about a job carries: queue, job id, job name, attempt and the payload's request id. */
function jobBindings(queue: string, job: Job): Record<string, unknown> {
  const requestId = requestIdOf(job.data);
  return {
    queue,
    jobId: job.id,
    // `jobName`, not `name`: a top-level `name` is redacted as possible PHI.
    jobName: job.name,
    attempt: jobAttempt(job),
    ...(requestId !== undefined ? { requestId } : {}),
  };
}

export function jobLogger(logger: Logger, queue: string, job: Job): Logger {
  return logger.child(jobBindings(queue, job));
}

const REASON_CODE = /^[a-z][a-z0-9_]*$/;
export const INTERNAL_ERROR = 'internal_error';

/**
 * What a failed job records as its reason: the error's own `code` when it is
 * a code (lower-case letters, digits, underscores; a gateway error's decline
 * code, a config error's code), else `internal_error`. Never the message,
 * which may carry ids, amounts or worse.
 */
export function reasonCodeOf(error: unknown): string {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.length <= 64 && REASON_CODE.test(code) ? code : INTERNAL_ERROR;
}

/**
 * A job that no retry can complete: BullMQ fails it at once and records `code` as its reason. The message (ids,
 * never data) goes to the log only, like every processor error's.
 */
export class JobFailedError extends UnrecoverableError {
  constructor(
    readonly code: string,
    message: string = code,
  ) {
    super(message);
  }
}

/** BullMQ's control-flow errors (move to delayed/waiting, rate limited) are not failures: they pass untouched. */
function isBullMqSignal(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    error.message === RATE_LIMIT_ERROR ||
    error.name === 'DelayedError' ||
    error.name === 'WaitingError' ||
    error.name === 'WaitingChildrenError'
  );
}

/** The processor's own error behind each failure the wrapper threw, for the `failed` log line only. */
const originalErrors = new WeakMap<Error, unknown>();

/**
 * The error to hand BullMQ for what a processor threw: its message is the
 * reason code; an `UnrecoverableError` stays one (no retry) and anything else
 * stays retryable; the stack keeps the original's frames (code locations, no
 * data) under the new first line. The original goes to the log only.
 */
export function reasonCodeError(error: unknown): Error {
  if (isBullMqSignal(error)) return error as Error;
  const code = reasonCodeOf(error);
  const original = error instanceof Error ? error : undefined;
  const unrecoverable = error instanceof UnrecoverableError || original?.name === 'UnrecoverableError';
  const failure = unrecoverable ? new UnrecoverableError(code) : new Error(code);
  if (original && /^[A-Za-z][A-Za-z0-9]*$/.test(original.name)) failure.name = original.name;
  const frames = (original?.stack ?? '').split('\n').filter((line) => /^\s+at /.test(line));
  failure.stack = [`${failure.name}: ${code}`, ...frames].join('\n');
  Object.defineProperty(failure, 'code', { value: code, enumerable: true });
  originalErrors.set(failure, error);
  return failure;
}

/** How long a job waited before this attempt started, and how long the attempt ran (to now, if unfinished). */
function durations(job: Job, now = Date.now()): { queuedMs?: number; executionMs?: number } {
  if (job.processedOn === undefined || job.processedOn === null) return {};
  return { queuedMs: job.processedOn - job.timestamp, executionMs: (job.finishedOn ?? now) - job.processedOn };
}

/**
 * Lifecycle log lines for every job of a worker: active (with how long it
 * was queued), completed and failed (with queued and execution durations; a
 * failure with its reason code, and the processor's own error for whoever
 * reads the logs), stalled (with how long it had run when its lock expired).
 */
export function logJobLifecycle(
  worker: Worker,
  logger: Logger,
  findJob: (jobId: string) => Promise<Job | undefined> = (jobId) => Job.fromId(worker, jobId),
): void {
  const queue = worker.name;
  // Scheduler runs (outbox sweep, anchors, reconcile, renewal sweep) come every minute or so and mostly find nothing
  // to do; what they did they log themselves at info. Their lifecycle goes to debug, so an idle system is quiet.
  const level = (job: Job) => (job.repeatJobKey ? 'debug' : 'info');
  // One line each, with the job's fields in it: no child logger is made for two lines.
  worker.on('active', (job) => {
    logger[level(job)]({ ...jobBindings(queue, job), queuedMs: durations(job).queuedMs }, 'job active');
  });
  worker.on('completed', (job) => {
    const taken = durations(job);
    logger[level(job)]({ ...jobBindings(queue, job), ...taken }, 'job completed');
    if (taken.executionMs !== undefined) jobDuration.observe({ queue, outcome: 'completed' }, taken.executionMs / 1000);
  });
  worker.on('failed', (job, error) => {
    const original = originalErrors.get(error) ?? error;
    const log = job ? jobLogger(logger, queue, job) : logger.child({ queue });
    const taken = job ? durations(job) : {};
    const reason = reasonCodeOf(original);
    log.warn({ ...taken, reason, err: original }, 'job attempt failed');
    jobFailures.inc({ queue, reason });
    if (taken.executionMs !== undefined) jobDuration.observe({ queue, outcome: 'failed' }, taken.executionMs / 1000);
  });
  worker.on('stalled', (jobId) => {
    findJob(jobId).then(
      (job) => {
        const log = job ? jobLogger(logger, queue, job) : logger.child({ queue, jobId });
        log.warn(job ? durations(job) : {}, 'job stalled');
      },
      () => logger.warn({ queue, jobId }, 'job stalled'),
    );
  });
}

/**
 * The stored status of a record this attempt did not get to move (another
 * attempt, or the gateway's webhook, got there first). `kind` names it in the error.
 */
export async function storedStatus<Status>(
  kind: string,
  id: string,
  find: (id: string) => PromiseLike<{ status: Status } | null>,
): Promise<Status> {
  const current = await find(id);
  if (!current) throw new UnrecoverableError(`${kind} ${id} not found`);
  return current.status;
}
