/** How the client retries 429 and 503 answers (always) and network errors (only on idempotent requests). */
export interface RetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retrying off). */
  maxRetries?: number;
  /** The first backoff, doubled on each retry, with full jitter (default 250 ms). */
  baseDelayMs?: number;
  /** No wait is longer than this, whatever `Retry-After` says (default 20 s). */
  maxDelayMs?: number;
}

const RETRIED_STATUSES = new Set([429, 503]);
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * A `fetch` for openapi-fetch that resends the request on 429/503 (honouring `Retry-After`, seconds or an HTTP date)
 * and on network errors when the request is idempotent (a safe method, or a POST carrying an `Idempotency-Key`). Each
 * attempt sends a copy of the same `Request`, so the same `Idempotency-Key` goes out every time and the api answers a
 * retried POST with the payment the first attempt created.
 */
export function retryingFetch(
  inner: (request: Request) => Promise<Response>,
  options: RetryOptions = {},
  sleep: (ms: number) => Promise<void> = defaultSleep,
): (request: Request) => Promise<Response> {
  const maxRetries = options.maxRetries ?? 3;
  const baseDelayMs = options.baseDelayMs ?? 250;
  const maxDelayMs = options.maxDelayMs ?? 20_000;
  const backoff = (retry: number): number => Math.min(maxDelayMs, Math.round(Math.random() * baseDelayMs * 2 ** retry));

  return async (request) => {
    const idempotent = IDEMPOTENT_METHODS.has(request.method) || request.headers.has('idempotency-key');
    for (let retry = 0; ; retry += 1) {
      const last = retry >= maxRetries;
      let response: Response;
      try {
        response = await inner(last ? request : request.clone());
      } catch (error) {
        if (last || !idempotent || request.signal.aborted) throw error;
        await sleep(backoff(retry));
        continue;
      }
      if (last || !RETRIED_STATUSES.has(response.status)) return response;
      const wait = retryAfterMs(response.headers.get('retry-after'));
      await response.body?.cancel();
      await sleep(Math.min(maxDelayMs, wait ?? backoff(retry)));
    }
  };
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const trimmed = header.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
