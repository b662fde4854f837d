/** How long a request waits for Redis to take a job; past it the request answers anyway (the sweep queues the recorded work). */
export const ENQUEUE_DEADLINE_MS = 3_000;

export class DeadlineExceededError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not finish within ${ms} ms`);
    this.name = 'DeadlineExceededError';
  }
}

/**
 * Rejects when `promise` takes longer than `ms`. The work itself is not
 * cancelled, so use it only for idempotent work (an enqueue with a fixed job id).
 */
export async function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceededError(what, ms)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
