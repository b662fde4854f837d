/**
 * The published TypeScript client (clients/typescript) against the compiled api and workers as their own processes,
 * on the real Redis, FerretDB and stripe-mock (behind the test-mode simulator for declines): what a user of the client
 * notices — a retried POST charges once, errors carry our `code`, pagination sees every item once, `waitForPayment`
 * returns the outcome, webhooks verify.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import {
  createHipaaBillingClient,
  HipaaBillingError,
  verifyWebhook,
  WebhookVerificationError,
  type HipaaBillingClient,
} from '../../clients/typescript/src';
import { startStripeSim, type StripeSim } from '../../devtools/stripe-sim';
import { mintDevToken } from '../../devtools/tokens';
import { createCompany, devAttestation } from '../../models/companies';
import { createTestContext, type TestContext } from '../support/harness';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';

const suffix = randomBytes(6).toString('hex');
const PAYMENTS = '/v1/companies/{companyId}/payments';

let ctx: TestContext | undefined;
let sim: StripeSim | undefined;
let api: NodeProcess | undefined;
let workers: NodeProcess | undefined;
let apiUrl = '';
let companyId = '';
let tokensMinted = 0;

function context(): TestContext {
  if (!ctx) throw new Error('test context was not created (see beforeAll)');
  return ctx;
}

/** A client as an upstream app makes one: a token function that re-mints, retries with short waits. */
function client(baseUrl = apiUrl, fetchImpl?: (request: Request) => Promise<Response>): HipaaBillingClient {
  return createHipaaBillingClient({
    baseUrl,
    token: async () => {
      tokensMinted += 1;
      return mintDevToken(context().config, { companyId, roles: ['service'] });
    },
    retry: { maxRetries: 4, baseDelayMs: 50, maxDelayMs: 5_000 },
    ...(fetchImpl ? { fetch: fetchImpl } : {}),
  });
}

function visaPayment(amount: number) {
  return {
    amount,
    currency: 'usd',
    customer: 'cus_TypedClient',
    paymentMethod: 'pm_card_visa',
    serviceCategory: 'copay' as const,
  };
}

interface ProxiedRequest {
  method: string;
  url: string;
  idempotencyKey: string | undefined;
  at: number;
  answered: number;
}

/**
 * A small proxy in front of the api that plays a flaky load balancer for `POST …/payments`: the first attempt reaches
 * the api (which records the payment) but the client is told `503 Retry-After: 1`, as when a response is lost; the
 * second is refused `429 Retry-After: 1` without reaching the api; later attempts pass through.
 */
async function startFlakyProxy(
  target: string,
): Promise<{ url: string; requests: ProxiedRequest[]; close(): Promise<void> }> {
  const requests: ProxiedRequest[] = [];
  let paymentPosts = 0;
  const readBody = async (request: IncomingMessage): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  };
  const server: Server = createServer((request, response) => {
    void (async () => {
      const body = await readBody(request);
      const method = request.method ?? 'GET';
      const isPaymentPost = method === 'POST' && /\/payments$/.test(request.url ?? '');
      const attempt = isPaymentPost ? ++paymentPosts : 0;
      const forward = async () => {
        const headers = new Headers();
        for (const [name, value] of Object.entries(request.headers)) {
          if (value !== undefined && name !== 'host' && name !== 'content-length' && name !== 'connection')
            headers.set(name, Array.isArray(value) ? value.join(', ') : value);
        }
        return fetch(`${target}${request.url ?? '/'}`, {
          method,
          headers,
          ...(method === 'GET' || method === 'HEAD' ? {} : { body }),
        });
      };
      let status: number;
      if (attempt === 1) {
        await (await forward()).arrayBuffer();
        status = 503;
        response.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        response.end(JSON.stringify({ error: { code: 'service_unavailable', message: 'try again' } }));
      } else if (attempt === 2) {
        status = 429;
        response.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        response.end(JSON.stringify({ error: { code: 'rate_limited', message: 'too many requests' } }));
      } else {
        const upstream = await forward();
        const payload = Buffer.from(await upstream.arrayBuffer());
        const headers: Record<string, string> = {};
        upstream.headers.forEach((value, name) => {
          if (!['content-length', 'transfer-encoding', 'content-encoding', 'connection'].includes(name))
            headers[name] = value;
        });
        status = upstream.status;
        response.writeHead(upstream.status, { ...headers, 'content-length': String(payload.length) });
        response.end(payload);
      }
      const key = request.headers['idempotency-key'];
      requests.push({
        method,
        url: request.url ?? '',
        idempotencyKey: typeof key === 'string' ? key : undefined,
        at: Date.now(),
        answered: status,
      });
    })().catch((error: unknown) => {
      response.destroy(error instanceof Error ? error : new Error(String(error)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve()))),
  };
}

beforeAll(async () => {
  assertBuildIsCurrent();
  const upstreamUrl = process.env.STRIPE_API_BASE;
  if (!upstreamUrl) throw new Error('STRIPE_API_BASE is not set (the services global setup sets it)');
  sim = await startStripeSim({ upstreamUrl });
  ctx = await createTestContext('typed_client', { STRIPE_API_BASE: sim.url });
  companyId = await createCompany(ctx.db, {
    name: 'Typed Client Pediatrics',
    stripeSecretKey: `sk_test_typedClient${suffix}`,
    compliance: devAttestation('test'),
  });
  api = startNodeProcess('api', 'api/main.js', { ...ctx.env, PORT: '0' });
  workers = startNodeProcess('workers', 'workers/main.js', ctx.env);
  // Generous: the machine may be busy with other suites.
  const listening = await api.waitForLog((r) => r.msg === 'api listening', {
    what: '"api listening"',
    timeoutMs: 60_000,
  });
  apiUrl = String(listening.url);
  await workers.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"', timeoutMs: 60_000 });
}, 150_000);

afterAll(async () => {
  await Promise.all([api?.kill(), workers?.kill()]);
  await sim?.close();
  await ctx?.close();
});

describe('the typed client against the running api and workers', () => {
  it('a payment POSTed through a 503 and a 429 (Retry-After: 1) is created and charged once: the same Idempotency-Key was resent', async () => {
    const proxy = await startFlakyProxy(apiUrl);
    try {
      const started = Date.now();
      const { data, response } = await client(proxy.url).POST(PAYMENTS, {
        params: { path: { companyId } },
        body: visaPayment(3_100),
      });
      const attempts = proxy.requests.filter((r) => r.method === 'POST');
      expect(attempts.map((r) => r.answered)).toEqual([503, 429, 202]);
      // One key, made by the client, sent on every attempt.
      const keys = new Set(attempts.map((r) => r.idempotencyKey));
      expect(keys.size).toBe(1);
      const [key] = [...keys];
      expect(key).toMatch(/^[\x21-\x7e]{8,255}$/);
      // Retry-After honoured: a second between attempts.
      expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(900);
      expect(attempts[2]!.at - attempts[1]!.at).toBeGreaterThanOrEqual(900);
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_800);
      // The api had recorded the payment on the first attempt; the last one is its replay.
      expect(response.headers.get('idempotent-replayed')).toBe('true');
      expect(data?.id).toMatch(/^pay_[0-9A-Z]{26}$/);
      const paymentId = data!.id;

      expect(await context().db.models.Payment.countDocuments({ companyId, idempotencyKey: key })).toBe(1);
      const settled = await client().waitForPayment(companyId, paymentId, { timeoutMs: 30_000, intervalMs: 100 });
      expect(settled).toMatchObject({ id: paymentId, status: 'succeeded', amount: 3_100 });
      const stored = await context().db.models.Payment.findById(paymentId).lean();
      const intentId = stored?.stripePaymentIntentId;
      expect(intentId).toBeDefined();
      expect(sim!.succeededChargeCount(intentId!)).toBe(1);
    } finally {
      await proxy.close();
    }
  });

  it("a caller's own Idempotency-Key is sent as given: the same key twice is one payment", async () => {
    const key = `typed-own-${suffix}`;
    const post = () =>
      client().POST(PAYMENTS, {
        params: { path: { companyId }, header: { 'Idempotency-Key': key } },
        body: visaPayment(1_234),
      });
    const mintedBefore = tokensMinted;
    const first = await post();
    const second = await post();
    // The token function is asked before every call (so an expired token is re-minted).
    expect(tokensMinted - mintedBefore).toBe(2);
    expect(second.data?.id).toBe(first.data?.id);
    expect(second.response.headers.get('idempotent-replayed')).toBe('true');
    expect(await context().db.models.Payment.countDocuments({ companyId, idempotencyKey: key })).toBe(1);
  });

  it('errors are thrown as HipaaBillingError with status, our code and the request id: 404 and 422', async () => {
    const missing = await client()
      .GET(`${PAYMENTS}/{paymentId}`, { params: { path: { companyId, paymentId: 'pay_01J00000000000000000000000' } } })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(missing).toBeInstanceOf(HipaaBillingError);
    expect(missing).toMatchObject({ status: 404, code: 'payment_not_found', requestId: expect.any(String) });

    const key = `typed-conflict-${suffix}`;
    await client().POST(PAYMENTS, {
      params: { path: { companyId }, header: { 'Idempotency-Key': key } },
      body: visaPayment(500),
    });
    const conflict = await client()
      .POST(PAYMENTS, {
        params: { path: { companyId }, header: { 'Idempotency-Key': key } },
        body: visaPayment(501),
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(conflict).toBeInstanceOf(HipaaBillingError);
    expect(conflict).toMatchObject({ status: 422, code: 'idempotency_key_conflict' });
    expect((conflict as HipaaBillingError).requestId).toMatch(/\S/);

    const invalid = await client()
      .POST(PAYMENTS, { params: { path: { companyId } }, body: { ...visaPayment(100), currency: 'not-a-currency' } })
      .catch((error: unknown) => error);
    expect(invalid).toMatchObject({ status: 400, code: 'invalid_request' });
    expect((invalid as HipaaBillingError).details?.map((d) => d.field)).toContain('currency');
  });

  it('waitForPayment returns the outcome: a declined card comes back failed with its reason code', async () => {
    const { data } = await client().POST(PAYMENTS, {
      params: { path: { companyId } },
      body: { ...visaPayment(1_999), paymentMethod: 'pm_card_chargeDeclined' },
    });
    expect(data?.status).toBe('queued');
    const outcome = await client().waitForPayment(companyId, data!.id, { timeoutMs: 30_000, intervalMs: 100 });
    expect(outcome).toMatchObject({ id: data!.id, status: 'failed', failure: { code: 'card_declined' } });
  });

  it('paginate iterates every payment exactly once across pages', async () => {
    for (let i = 0; i < 5; i += 1) {
      await client().POST(PAYMENTS, { params: { path: { companyId } }, body: visaPayment(700 + i) });
    }
    const pages: string[] = [];
    const counting = client(apiUrl, (request) => {
      pages.push(new URL(request.url).searchParams.get('after') ?? '(first)');
      return fetch(request);
    });
    const seen: string[] = [];
    for await (const payment of counting.paginate(PAYMENTS, { params: { path: { companyId }, query: { limit: 2 } } })) {
      seen.push(payment.id);
    }
    const stored = (await context().db.models.Payment.find({ companyId }, { _id: 1 }).lean()).map((p) => String(p._id));
    expect(stored.length).toBeGreaterThanOrEqual(9);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual([...stored].sort());
    // Pages of two: more than one page was read, each after the previous page's cursor.
    expect(pages.length).toBeGreaterThanOrEqual(Math.ceil(stored.length / 2));
    expect(pages.length).toBeLessThanOrEqual(Math.ceil(stored.length / 2) + 1);
    expect(new Set(pages).size).toBe(pages.length);
  });
});

describe('verifyWebhook', () => {
  const secret = `whsec_${randomBytes(24).toString('base64')}`;
  const event = {
    type: 'payment.succeeded',
    timestamp: '2026-12-05T12:00:00.000Z',
    data: {
      object: 'payment',
      id: 'pay_01J00000000000000000000000',
      status: 'succeeded',
      amount: 4_250,
      currency: 'usd',
      createdAt: '2026-12-05T11:59:58.000Z',
      updatedAt: '2026-12-05T12:00:00.000Z',
    },
  };
  const sign = (body: string, at = new Date()) => ({
    'webhook-id': `evt_${suffix}`,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(`evt_${suffix}`, at, body),
  });

  it('accepts a payload signed with standardwebhooks and returns the typed event', () => {
    const body = JSON.stringify(event);
    const verified = verifyWebhook(secret, body, new Headers(sign(body)));
    expect(verified).toEqual(event);
    if (verified.type !== 'payment.succeeded') throw new Error(`unexpected ${verified.type}`);
    // Narrowed on `type`: a payment's fields.
    expect(verified.data.amount).toBe(4_250);
    // Node's IncomingHttpHeaders shape works too.
    expect(verifyWebhook(secret, Buffer.from(body), { ...sign(body), 'content-type': 'application/json' })).toEqual(
      event,
    );
  });

  it('rejects a tampered body, another secret and an old timestamp', () => {
    const body = JSON.stringify(event);
    const headers = sign(body);
    const tampered = body.replace('4250', '425000');
    expect(tampered).not.toBe(body);
    expect(() => verifyWebhook(secret, tampered, headers)).toThrow(WebhookVerificationError);
    expect(() => verifyWebhook(`whsec_${randomBytes(24).toString('base64')}`, body, headers)).toThrow(
      WebhookVerificationError,
    );
    const tenMinutesAgo = new Date(Date.now() - 10 * 60_000);
    expect(() => verifyWebhook(secret, body, sign(body, tenMinutesAgo))).toThrow(WebhookVerificationError);
  });
});
