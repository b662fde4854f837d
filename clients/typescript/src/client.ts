import createFetchClient, {
  type Client,
  type ClientOptions,
  type ClientPathsWithMethod,
  type MaybeOptionalInit,
  type Middleware,
} from 'openapi-fetch';
import { HipaaBillingError } from './errors';
import { retryingFetch, type RetryOptions } from './retry';
import type { components, paths } from './schema';

/** The api's paths as the client takes them: `Idempotency-Key` is optional, the client makes one when it is left out. */
export type ClientPaths = {
  [P in keyof paths]: { [M in keyof paths[P]]: OptionalIdempotencyKey<paths[P][M]> };
};

type OptionalIdempotencyKey<Operation> = Operation extends { parameters: { header: infer H } }
  ? H extends { 'Idempotency-Key': string }
    ? Omit<Operation, 'parameters'> & {
        parameters: Omit<Operation['parameters'], 'header'> & {
          header?: Omit<H, 'Idempotency-Key'> & { 'Idempotency-Key'?: string };
        };
      }
    : Operation
  : Operation;

/** A bearer token, or a function that returns one (called before every request, so it can re-mint an expired one). */
export type TokenSource = string | (() => string | Promise<string>);

export interface HipaaBillingClientOptions {
  /** The api's origin, e.g. `https://billing.example.com`. */
  baseUrl: string;
  token: TokenSource;
  retry?: RetryOptions;
  /** A `fetch` of your own (a proxy agent, tests); the global one by default. */
  fetch?: (request: Request) => Promise<Response>;
  /** Headers sent with every request. */
  headers?: ClientOptions['headers'];
}

/** A payment as `GET …/payments/{paymentId}` answers it. */
export type Payment =
  paths['/v1/companies/{companyId}/payments/{paymentId}']['get']['responses'][200]['content']['application/json'];

/** Statuses a payment leaves on its own: queued for the charge worker, or being charged. */
export const PAYMENT_PENDING_STATUSES: readonly Payment['status'][] = ['queued', 'processing'];

export interface WaitForOptions {
  /** Give up (throw `HipaaBillingError` `wait_timeout`) after this long (default 60 s). */
  timeoutMs?: number;
  /** Between polls (default 500 ms; the client's retries still honour `Retry-After`). */
  intervalMs?: number;
}

type GetPaths = ClientPathsWithMethod<Client<ClientPaths>, 'get'>;
type JsonOk<P extends GetPaths> = ClientPaths[P]['get'] extends {
  responses: { 200: { content: { 'application/json': infer Body } } };
}
  ? Body
  : never;

/** The list routes that page with a cursor: they answer `{ items, nextCursor }` and take `after` (and `limit`). */
export type PaginatedPath = {
  [P in GetPaths]: JsonOk<P> extends { items: unknown[]; nextCursor: string | null } ? P : never;
}[GetPaths];

/** One item of a paginated list route. */
export type PageItem<P extends PaginatedPath> = JsonOk<P> extends { items: (infer Item)[] } ? Item : never;

/** The `init` of a list route without its cursor: the client sets `after` itself. */
export type PaginateInit<P extends PaginatedPath> = MaybeOptionalInit<ClientPaths[P], 'get'>;

export interface HipaaBillingClient extends Client<ClientPaths> {
  /**
   * Every item of a list route, page after page (`after` = the previous page's `nextCursor`), until `nextCursor` is
   * null: `for await (const payment of client.paginate('/v1/companies/{companyId}/payments', { params }))`.
   */
  paginate<P extends PaginatedPath>(path: P, init: PaginateInit<P>): AsyncGenerator<PageItem<P>, void, undefined>;
  /** Polls a payment until it leaves `queued`/`processing` and returns it (succeeded, failed, requires_action, …). */
  waitForPayment(companyId: string, paymentId: string, options?: WaitForOptions): Promise<Payment>;
}

const NEEDS_IDEMPOTENCY_KEY = new Set(['POST']);

/**
 * A typed client for the hipaa-billing api (openapi-fetch over the generated `paths`), with what every caller needs:
 * the bearer token on every request, an `Idempotency-Key` on every POST that has none, retries on 429/503 (and network
 * errors on idempotent requests) that honour `Retry-After` and resend the same key, every non-2xx thrown as
 * `HipaaBillingError`, cursor iteration and polling a payment to its outcome.
 */
export function createHipaaBillingClient(options: HipaaBillingClientOptions): HipaaBillingClient {
  const transport = options.fetch ?? ((request: Request) => globalThis.fetch(request));
  const client = createFetchClient<ClientPaths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    fetch: retryingFetch(transport, options.retry),
    ...(options.headers ? { headers: options.headers } : {}),
  });
  client.use(authAndIdempotency(options.token), throwOnError());

  async function* paginate<P extends PaginatedPath>(path: P, init: PaginateInit<P>): AsyncGenerator<PageItem<P>> {
    const base = (init ?? {}) as { params?: { query?: Record<string, unknown> } };
    let after: string | undefined;
    for (;;) {
      const query = { ...base.params?.query, ...(after === undefined ? {} : { after }) };
      const page = await rawGet(client, path, { ...base, params: { ...base.params, query } });
      const { items, nextCursor } = page as { items: PageItem<P>[]; nextCursor: string | null };
      yield* items;
      if (nextCursor === null || nextCursor === undefined) return;
      after = nextCursor;
    }
  }

  async function waitForPayment(companyId: string, paymentId: string, wait: WaitForOptions = {}): Promise<Payment> {
    const deadline = Date.now() + (wait.timeoutMs ?? 60_000);
    const interval = wait.intervalMs ?? 500;
    for (;;) {
      const { data } = await client.GET('/v1/companies/{companyId}/payments/{paymentId}', {
        params: { path: { companyId, paymentId } },
      });
      if (data === undefined) throw new HipaaBillingError(0, 'empty_response', 'the api sent no payment', undefined);
      if (!PAYMENT_PENDING_STATUSES.includes(data.status)) return data;
      if (Date.now() + interval > deadline) {
        throw new HipaaBillingError(
          0,
          'wait_timeout',
          `payment ${paymentId} is still ${data.status} after ${wait.timeoutMs ?? 60_000} ms`,
          undefined,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, interval));
    }
  }

  return Object.assign(client, { paginate, waitForPayment });
}

/** `GET` with the path's type erased (paginate's callers are typed by `PaginatedPath`). */
async function rawGet(client: Client<ClientPaths>, path: string, init: object): Promise<unknown> {
  const get = client.GET as unknown as (path: string, init: object) => Promise<{ data?: unknown }>;
  const { data } = await get(path, init);
  return data;
}

function authAndIdempotency(token: TokenSource): Middleware {
  return {
    async onRequest({ request }) {
      const value = typeof token === 'function' ? await token() : token;
      request.headers.set('authorization', `Bearer ${value}`);
      if (NEEDS_IDEMPOTENCY_KEY.has(request.method) && !request.headers.has('idempotency-key')) {
        request.headers.set('idempotency-key', globalThis.crypto.randomUUID());
      }
      return request;
    },
  };
}

function throwOnError(): Middleware {
  return {
    async onResponse({ response }) {
      if (!response.ok) throw await HipaaBillingError.fromResponse(response);
      return undefined;
    },
    onError({ error }) {
      if (error instanceof HipaaBillingError) return error;
      return new HipaaBillingError(0, 'network_error', `the request failed: ${String(error)}`, undefined, undefined, {
        cause: error,
      });
    },
  };
}

/** The error body every non-2xx answer carries. */
export type ErrorBody = components['schemas']['Error'];
