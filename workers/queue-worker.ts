import { UnrecoverableError, Worker, type ConnectionOptions, type Job } from 'bullmq';

/** Where a worker takes its jobs from, and how many at once. */
export interface QueueWorkerOptions {
  connection: ConnectionOptions;
  prefix: string;
  concurrency: number;
}

/** A BullMQ worker on queue `name` that hands each job, with `deps`, to `process`. */
export function createQueueWorker<Data, Result, Deps>(
  name: string,
  process: (job: Job<Data>, deps: Deps) => Promise<Result>,
  deps: Deps & QueueWorkerOptions,
): Worker<Data, Result> {
  return new Worker<Data, Result>(name, (job) => process(job, deps), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
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
