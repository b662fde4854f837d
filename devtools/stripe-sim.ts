/**
 * stripe-sim — DEVELOPMENT/TEST TOOL ONLY, never deploy it.
 *
 * An HTTP proxy in front of stripe-mock. stripe-mock validates every request against
 * Stripe's OpenAPI spec but is stateless and always answers fixtures, so on its own it
 * never declines, never asks for 3DS and never fails. Every request is forwarded to
 * stripe-mock first (its validation stays real: its 4xx pass through unchanged); on top
 * of a 200 this overlays what Stripe test mode does for the documented test
 * PaymentMethod ids, remembers PaymentIntent state, replays idempotent requests, and lets
 * tests script faults (5xx, 429, slow answers, dropped connections).
 */
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

// qs is the form codec stripe itself uses (installed as its dependency) and has no bundled
// types, so it is required with the one signature used here.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const qs = require('qs') as { parse(text: string, options?: { depth?: number }): Record<string, unknown> };

export type JsonObject = Record<string, unknown>;
/** A pino logger fits. */
export interface StripeSimLogger {
  info(message: string): void;
  warn(message: string): void;
}
export interface StripeSimOptions {
  upstreamUrl: string;
  host?: string;
  port?: number;
  logger?: StripeSimLogger;
}
export interface StripeErrorBody {
  error: { type: string; message: string; code?: string; [field: string]: unknown };
}

/** What a scripted rule does instead of the normal forward-and-overlay. */
export type StripeSimFault =
  | { status: 500 | 502 | 503; body?: StripeErrorBody }
  | { status: 400 | 401 | 402 | 404; body: StripeErrorBody } // Stripe refuses the request (a refund it will not make, a key)
  | { status: 429 }
  | { delayMs: number } // held this long, then processed normally: the client may have given up
  // the issuer asks the payer to authenticate this confirm, off-session too: the PaymentIntent waits in requires_action
  // (as Stripe Billing leaves a renewal's for its hosted invoice page) until finishAction
  | { requiresAction: true }
  | { destroySocket: true }; // connection dropped before anything reaches stripe-mock

export type StripeSimRule = StripeSimFault & {
  method?: string; // any method when omitted
  path: string | RegExp; // a string matches as a prefix of the path (query excluded)
  times?: number; // default 1; Infinity for "until clearScripts()"
};

export interface RecordedStripeRequest {
  method: string;
  path: string;
  query: JsonObject;
  form: JsonObject;
  idempotencyKey: string | undefined;
  receivedAt: Date;
}

export interface StripeSim {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  script(rule: StripeSimRule): void;
  clearScripts(): void;
  /** Every request received, scripted or not; tests may inspect or empty it. */
  readonly requests: RecordedStripeRequest[];
  /** Distinct confirms (idempotent replays excluded) that made this PaymentIntent succeed. */
  succeededChargeCount(paymentIntentId: string): number;
  /** The sum of the distinct refunds (idempotent replays excluded) made against this PaymentIntent. */
  refundedAmount(paymentIntentId: string): number;
  /**
   * What happens at Stripe with no request of ours, and whose webhook may never come: the payer finishes (or fails)
   * 3-D Secure on a PaymentIntent in requires_action, or the bank settles a pending refund.
   */
  finishAction(paymentIntentId: string, outcome: 'succeeded' | 'failed'): void;
  settleRefund(refundId: string, status: 'succeeded' | 'failed'): void;
  close(): Promise<void>;
}

interface SimResponse {
  status: number;
  headers: http.OutgoingHttpHeaders;
  body: string;
  replayable: boolean;
}
interface CardDecline {
  code: string;
  decline_code: string;
  message: string;
}

const declinedWith = (decline_code: string, message: string, code = 'card_declined'): CardDecline => ({
  code,
  decline_code,
  message,
});
const GENERIC_DECLINE = declinedWith('generic_decline', 'Your card was declined.');
const INSUFFICIENT_FUNDS = declinedWith('insufficient_funds', 'Your card has insufficient funds.');
const DECLINES: Record<string, CardDecline> = {
  pm_card_chargeDeclined: GENERIC_DECLINE,
  pm_card_visa_chargeDeclined: GENERIC_DECLINE,
  pm_card_chargeDeclinedInsufficientFunds: INSUFFICIENT_FUNDS,
  pm_card_visa_chargeDeclinedInsufficientFunds: INSUFFICIENT_FUNDS,
  pm_card_chargeDeclinedExpiredCard: declinedWith('expired_card', 'Your card has expired.', 'expired_card'),
};
const AUTHENTICATION_REQUIRED_PMS = new Set(['pm_card_threeDSecure2Required', 'pm_card_authenticationRequired']);
const OFF_SESSION_AUTH_DECLINE = declinedWith(
  'authentication_required',
  'Your card was declined. This transaction requires authentication.',
  'authentication_required',
);
/**
 * The account a secret key belongs to, as Stripe's keys spell it: `sk_test_51` + the 16 characters after `acct_1` +
 * the key's own part (so keys rolled in one account share that prefix). stripe-mock answers one account for all keys.
 */
function accountOfKey(authorization: string | undefined): string {
  const key = (authorization ?? '').replace(/^Bearer\s+/i, '');
  const embedded = /^[sr]k_(?:test|live)_51([A-Za-z0-9]{16})/.exec(key)?.[1];
  return `acct_1${embedded ?? createHash('sha256').update(key).digest('hex').slice(0, 16)}`;
}
const CONFIRMABLE_STATUSES = ['requires_confirmation', 'requires_action', 'requires_payment_method'];
/**
 * The test card a payment method is: `pm_card_visa`, or a copy of it, `pm_card_visa__<anything>`. Stripe makes a new
 * PaymentMethod each time a test card is used; a copy is one of those, a card the payer saved again (another id, the
 * same card number and outcome).
 */
const testCardOf = (paymentMethodId: string) => paymentMethodId.split('__')[0]!;
const ECHOED_FIELDS = ['amount', 'currency', 'customer', 'payment_method', 'metadata'] as const;
// stripe-mock fills these with example values; a PaymentIntent that was just created has none.
const FIXTURE_EXAMPLE_FIELDS = [
  'canceled_at',
  'cancellation_reason',
  'last_payment_error',
  'latest_charge',
  'next_action',
  'processing',
];
// Hop-by-hop headers describe one connection and must not be copied to the next one.
const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host'];
// /v1/payment_intents, /v1/payment_intents/:id, /v1/payment_intents/:id/<action>
const PAYMENT_INTENT_PATH = /^\/v1\/payment_intents(?:\/([^/]+)(?:\/([a-z_]+))?)?$/;
// Stripe test mode: a refund of a payment made with this PaymentMethod starts `pending` (and settles later).
const PENDING_REFUND_PM = 'pm_card_pendingRefund';

const newId = (prefix: string): string => `${prefix}_sim${randomBytes(9).toString('base64url').replace(/[-_]/g, 'x')}`;
const isTrue = (value: unknown): boolean => value !== undefined && value !== '' && value !== 'false';
const json = (status: number, body: unknown): SimResponse => ({
  status,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
  replayable: true,
});
// Not replayable: Stripe saves no idempotent result for requests that never ran the endpoint.
const stripeError = (status: number, error: StripeErrorBody['error']): SimResponse => ({
  ...json(status, { error }),
  replayable: false,
});

function withoutHopByHop(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const copy: http.OutgoingHttpHeaders = { ...headers };
  for (const name of HOP_BY_HOP) delete copy[name];
  return copy;
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export async function startStripeSim(options: StripeSimOptions): Promise<StripeSim> {
  const upstream = new URL(options.upstreamUrl);
  if (upstream.protocol !== 'http:')
    throw new Error(`stripe-sim: upstream must be an http:// stripe-mock, got ${upstream}`);
  // Overlaying fake outcomes on the real API would report payments that never happened.
  if (/(^|\.)stripe\.com$/i.test(upstream.hostname))
    throw new Error('stripe-sim: upstream must be stripe-mock, never the real Stripe API');
  const logger = options.logger ?? { info: () => undefined, warn: () => undefined };
  const upstreamAgent = new http.Agent({ keepAlive: true });
  const paymentIntents = new Map<string, JsonObject>();
  const idempotentResponses = new Map<string, { requestBody: string; response: SimResponse }>();
  const idempotentInFlight = new Set<string>();
  const succeededCharges = new Map<string, number>();
  const refundedAmounts = new Map<string, number>();
  /** The refunds made through the sim, newest last: `GET /v1/refunds?payment_intent=` lists them as Stripe would. */
  const refunds: JsonObject[] = [];
  const rules: Array<StripeSimRule & { remaining: number }> = [];
  const delayTimers = new Set<NodeJS.Timeout>();
  const requests: RecordedStripeRequest[] = [];

  function takeScriptedFault(method: string, path: string): StripeSimFault | undefined {
    const matches = (rule: StripeSimRule): boolean =>
      (!rule.method || rule.method.toUpperCase() === method) &&
      (typeof rule.path === 'string' ? path.startsWith(rule.path) : rule.path.test(path));
    const index = rules.findIndex(matches);
    const rule = rules[index];
    if (rule && --rule.remaining <= 0) rules.splice(index, 1);
    return rule;
  }

  function forward(req: http.IncomingMessage, body: string): Promise<SimResponse> {
    // identity encoding: the overlay has to read plain JSON
    const headers = {
      ...withoutHopByHop(req.headers),
      'accept-encoding': 'identity',
      'content-length': Buffer.byteLength(body),
    };
    const path = upstream.pathname.replace(/\/$/, '') + (req.url ?? '/');
    return new Promise((resolve, reject) => {
      const outgoing = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path, headers, agent: upstreamAgent },
        (response) => {
          const status = response.statusCode ?? 502;
          // A request that failed stripe-mock's validation never ran, so Stripe would not save it for replay.
          const toSimResponse = (text: string): SimResponse => ({
            status,
            headers: withoutHopByHop(response.headers),
            body: text,
            replayable: status < 400,
          });
          readBody(response).then((text) => resolve(toSimResponse(text)), reject);
        },
      );
      outgoing.on('error', reject);
      outgoing.end(body);
    });
  }

  /** Copies the fields Stripe echoes (stripe-mock does not) from a create/update/confirm form. */
  function echoRequestFields(paymentIntent: JsonObject, form: JsonObject): void {
    for (const field of ECHOED_FIELDS) {
      const value = form[field];
      if (value === undefined) continue;
      if (field === 'amount') paymentIntent.amount = Number(value);
      else if (field !== 'metadata') paymentIntent[field] = value === '' ? null : value;
      else {
        // Stripe merges metadata keys; an empty value unsets a key, an empty metadata unsets all.
        const merged = value === '' ? {} : { ...(paymentIntent.metadata as JsonObject), ...(value as JsonObject) };
        paymentIntent.metadata = Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== ''));
      }
    }
  }

  /** The PI stripe-mock answered, cleaned of example values, with what the request set. */
  function freshPaymentIntent(fixture: JsonObject, form: JsonObject): JsonObject {
    const paymentIntent: JsonObject = { ...fixture, metadata: {}, created: Math.floor(Date.now() / 1000) };
    paymentIntent.client_secret = `${String(fixture.id)}_secret_${randomBytes(12).toString('hex')}`;
    for (const field of FIXTURE_EXAMPLE_FIELDS) paymentIntent[field] = null;
    Object.assign(paymentIntent, { amount_received: 0, amount_capturable: 0 });
    echoRequestFields(paymentIntent, form);
    paymentIntent.status = paymentIntent.payment_method ? 'requires_confirmation' : 'requires_payment_method';
    return paymentIntent;
  }

  function declined(paymentIntent: JsonObject, decline: CardDecline, requestId: string): SimResponse {
    const paymentMethod = { id: String(paymentIntent.payment_method), object: 'payment_method', type: 'card' };
    const docUrl = `https://stripe.com/docs/error-codes/${decline.code.replace(/_/g, '-')}`;
    const error = {
      type: 'card_error',
      ...decline,
      charge: newId('ch'),
      doc_url: docUrl,
      payment_method: paymentMethod,
    };
    // Like Stripe: the failed PaymentMethod is detached and the PI waits for a new one.
    paymentIntent.status = 'requires_payment_method';
    Object.assign(paymentIntent, {
      payment_method: null,
      latest_charge: error.charge,
      last_payment_error: error,
      next_action: null,
    });
    const requestLogUrl = `https://dashboard.stripe.com/test/logs/${requestId}`;
    return json(402, { error: { ...error, payment_intent: paymentIntent, request_log_url: requestLogUrl } });
  }

  // Replayable, unlike other sim-made errors: Stripe saves the result once the endpoint ran.
  function unexpectedState(paymentIntent: JsonObject, message: string): SimResponse {
    const doc_url = 'https://stripe.com/docs/error-codes/payment-intent-unexpected-state';
    const code = 'payment_intent_unexpected_state';
    return json(400, {
      error: { type: 'invalid_request_error', code, message, doc_url, payment_intent: paymentIntent },
    });
  }

  /** The outcome Stripe test mode gives the PI's payment method on confirm. */
  function confirm(paymentIntent: JsonObject, form: JsonObject, requestId: string, askAction = false): SimResponse {
    const status = String(paymentIntent.status);
    if (status === 'succeeded') {
      const message =
        'You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed.';
      return unexpectedState(paymentIntent, message);
    }
    if (!CONFIRMABLE_STATUSES.includes(status)) {
      const message = `You cannot confirm this PaymentIntent because it has a status of ${status}. Only a PaymentIntent with one of the following statuses may be confirmed: ${CONFIRMABLE_STATUSES.join(', ')}.`;
      return unexpectedState(paymentIntent, message);
    }
    echoRequestFields(paymentIntent, form);
    const paymentMethodId = paymentIntent.payment_method;
    if (typeof paymentMethodId !== 'string') {
      const message =
        "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.";
      return unexpectedState(paymentIntent, message);
    }
    const testCard = testCardOf(paymentMethodId);
    const decline = DECLINES[testCard];
    if (decline) return declined(paymentIntent, decline, requestId);
    if (askAction || AUTHENTICATION_REQUIRED_PMS.has(testCard)) {
      if (!askAction && isTrue(form.off_session)) return declined(paymentIntent, OFF_SESSION_AUTH_DECLINE, requestId);
      const stripeJs = `https://hooks.stripe.com/3d_secure_2/hosted?payment_intent=${String(paymentIntent.id)}`;
      const useStripeSdk = { type: 'three_d_secure_redirect', stripe_js: stripeJs, source: newId('src') };
      paymentIntent.status = 'requires_action';
      paymentIntent.next_action = { type: 'use_stripe_sdk', use_stripe_sdk: useStripeSdk };
      return json(200, paymentIntent);
    }
    paymentIntent.status = 'succeeded';
    Object.assign(paymentIntent, {
      amount_received: paymentIntent.amount,
      latest_charge: newId('ch'),
      last_payment_error: null,
      next_action: null,
    });
    const id = String(paymentIntent.id);
    succeededCharges.set(id, (succeededCharges.get(id) ?? 0) + 1);
    return json(200, paymentIntent);
  }

  /** stripe-mock's refund with what Stripe would say: the metadata sent, and `pending` for PENDING_REFUND_PM. */
  function createdRefund(fixture: JsonObject, form: JsonObject): JsonObject {
    const metadata = form.metadata && typeof form.metadata === 'object' ? form.metadata : {};
    const refund: JsonObject = { ...fixture, metadata };
    const intentId = typeof form.payment_intent === 'string' ? form.payment_intent : undefined;
    if (intentId && paymentIntents.get(intentId)?.payment_method === PENDING_REFUND_PM) refund.status = 'pending';
    if (intentId) refundedAmounts.set(intentId, (refundedAmounts.get(intentId) ?? 0) + Number(refund.amount));
    refund.payment_intent = intentId ?? refund.payment_intent;
    refunds.push(refund);
    return refund;
  }

  /** Forwards to stripe-mock, then overlays Stripe test-mode PaymentIntent behaviour on a 200. */
  async function respond(
    req: http.IncomingMessage,
    path: string,
    body: string,
    form: JsonObject,
    askAction = false,
  ): Promise<SimResponse> {
    let upstreamResponse: SimResponse;
    try {
      upstreamResponse = await forward(req, body);
    } catch (error) {
      logger.warn(`stripe-sim: stripe-mock unreachable at ${upstream.origin}: ${(error as Error).message}`);
      return stripeError(502, {
        type: 'api_error',
        message: `stripe-sim could not reach stripe-mock at ${upstream.origin}`,
      });
    }
    const listedIntent =
      req.method === 'GET' && path === '/v1/refunds' ? new URL(req.url ?? '/', 'http://sim') : undefined;
    const listFor = listedIntent?.searchParams.get('payment_intent');
    if (upstreamResponse.status === 200 && listFor) {
      const data = refunds.filter((refund) => refund.payment_intent === listFor).reverse();
      return {
        ...upstreamResponse,
        body: JSON.stringify({ object: 'list', url: '/v1/refunds', has_more: false, data }),
      };
    }
    if (upstreamResponse.status === 200 && req.method === 'POST' && path === '/v1/refunds') {
      const refund = createdRefund(JSON.parse(upstreamResponse.body) as JsonObject, form);
      return { ...upstreamResponse, body: JSON.stringify(refund) };
    }
    if (upstreamResponse.status === 200 && req.method === 'GET' && path === '/v1/account') {
      const account = {
        ...(JSON.parse(upstreamResponse.body) as JsonObject),
        id: accountOfKey(req.headers.authorization),
      };
      return { ...upstreamResponse, body: JSON.stringify(account) };
    }
    const match = PAYMENT_INTENT_PATH.exec(path);
    if (upstreamResponse.status !== 200 || !match) return upstreamResponse;
    const [, id, action] = match;
    const reply = (response: SimResponse): SimResponse => ({
      ...response,
      headers: { ...upstreamResponse.headers, ...response.headers },
    });
    const requestId = String(upstreamResponse.headers['request-id'] ?? newId('req'));
    const fixture = (): JsonObject => JSON.parse(upstreamResponse.body) as JsonObject;
    const known = id ? paymentIntents.get(id) : undefined;

    if (req.method === 'GET' && id && !action) return known ? reply(json(200, known)) : upstreamResponse;
    if (req.method !== 'POST' || (action && action !== 'confirm')) return upstreamResponse; // cancel, capture...: fixture
    if (!id) {
      const created = freshPaymentIntent(fixture(), form);
      paymentIntents.set(String(created.id), created);
      return reply(isTrue(form.confirm) ? confirm(created, form, requestId, askAction) : json(200, created));
    }
    // A PI the sim has not seen (e.g. made directly against stripe-mock) starts from the fixture.
    const paymentIntent = known ?? freshPaymentIntent(fixture(), {});
    paymentIntents.set(id, paymentIntent);
    if (action === 'confirm') return reply(confirm(paymentIntent, form, requestId, askAction));
    echoRequestFields(paymentIntent, form); // update
    const gotPaymentMethod = paymentIntent.status === 'requires_payment_method' && paymentIntent.payment_method;
    if (gotPaymentMethod) paymentIntent.status = 'requires_confirmation';
    return reply(json(200, paymentIntent));
  }

  function faultResponse(
    fault: Exclude<StripeSimFault, { delayMs: number } | { destroySocket: true } | { requiresAction: true }>,
  ): SimResponse {
    if (fault.status === 429)
      return stripeError(429, { type: 'invalid_request_error', code: 'rate_limit', message: 'Too many requests' });
    return stripeError(
      fault.status,
      (fault.body ?? { error: { type: 'api_error', message: 'An unknown error occurred' } }).error,
    );
  }

  /** Answers with the stored response for a repeated Idempotency-Key, as Stripe does for 24h. */
  async function respondIdempotently(
    key: string,
    method: string,
    path: string,
    body: string,
    processRequest: () => Promise<SimResponse>,
  ): Promise<SimResponse> {
    const slot = `${key} ${method} ${path}`;
    const stored = idempotentResponses.get(slot);
    if (stored && stored.requestBody !== body) {
      const message = `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.`;
      return stripeError(400, { type: 'idempotency_error', message });
    }
    if (stored) return { ...stored.response, headers: { ...stored.response.headers, 'idempotent-replayed': 'true' } };
    if (idempotentInFlight.has(slot)) {
      const message = `There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): ${key}. Please try again later.`;
      return stripeError(409, { type: 'idempotency_error', message });
    }
    idempotentInFlight.add(slot);
    try {
      const response = await processRequest();
      if (response.replayable) idempotentResponses.set(slot, { requestBody: body, response });
      return response;
    } finally {
      idempotentInFlight.delete(slot);
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const { pathname: path, search } = new URL(req.url ?? '/', 'http://stripe-sim');
    const body = await readBody(req);
    const isForm = String(req.headers['content-type']).startsWith('application/x-www-form-urlencoded');
    const form = isForm ? qs.parse(body, { depth: 10 }) : {};
    const idempotencyKey = [req.headers['idempotency-key']].flat()[0];
    requests.push({ method, path, query: qs.parse(search.slice(1)), form, idempotencyKey, receivedAt: new Date() });

    const fault = takeScriptedFault(method, path);
    if (fault && 'destroySocket' in fault) return void req.socket.destroy();
    if (fault && 'status' in fault) return send(res, faultResponse(fault));
    // A delay stands for Stripe being slow: meanwhile the request counts as in progress.
    const processRequest = async (): Promise<SimResponse> => {
      if (fault && 'delayMs' in fault) await hold(fault.delayMs);
      return respond(req, path, body, form, fault !== undefined && 'requiresAction' in fault);
    };
    const idempotent = idempotencyKey !== undefined && method === 'POST';
    send(
      res,
      idempotent
        ? await respondIdempotently(idempotencyKey, method, path, body, processRequest)
        : await processRequest(),
    );
  }

  function hold(delayMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        delayTimers.delete(timer);
        resolve();
      }, delayMs);
      delayTimers.add(timer);
    });
  }

  function send(res: http.ServerResponse, response: SimResponse): void {
    if (res.destroyed || res.writableEnded) return; // client gave up (timeout); the work above still happened
    res.writeHead(response.status, { ...response.headers, 'content-length': Buffer.byteLength(response.body) });
    res.end(response.body);
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      logger.warn(`stripe-sim: internal error on ${req.method} ${req.url}: ${(error as Error).message}`);
      send(res, stripeError(500, { type: 'api_error', message: 'stripe-sim internal error' }));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${urlHost}:${address.port}`,
    host: address.address,
    port: address.port,
    requests,
    script: (rule) => void rules.push({ ...rule, remaining: rule.times ?? 1 }),
    clearScripts: () => void rules.splice(0),
    succeededChargeCount: (paymentIntentId) => succeededCharges.get(paymentIntentId) ?? 0,
    refundedAmount: (paymentIntentId) => refundedAmounts.get(paymentIntentId) ?? 0,
    finishAction(paymentIntentId, outcome) {
      const paymentIntent = paymentIntents.get(paymentIntentId);
      if (paymentIntent?.status !== 'requires_action') throw new Error(`${paymentIntentId} does not require action`);
      paymentIntent.next_action = null;
      if (outcome === 'failed') {
        paymentIntent.status = 'requires_payment_method';
        paymentIntent.last_payment_error = {
          type: 'card_error',
          code: 'payment_intent_authentication_failure',
          message: 'The provided PaymentMethod has failed authentication.',
        };
        return;
      }
      Object.assign(paymentIntent, {
        status: 'succeeded',
        amount_received: paymentIntent.amount,
        latest_charge: newId('ch'),
      });
      succeededCharges.set(paymentIntentId, (succeededCharges.get(paymentIntentId) ?? 0) + 1);
    },
    settleRefund(refundId, status) {
      const refund = refunds.find((candidate) => candidate.id === refundId);
      if (!refund) throw new Error(`no refund ${refundId} was made through the sim`);
      refund.status = status;
      if (status === 'failed') refund.failure_reason = 'expired_or_canceled_card';
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of delayTimers) clearTimeout(timer);
        delayTimers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections(); // the SDK keeps connections alive; don't wait for them
        upstreamAgent.destroy();
      }),
  };
}

if (require.main === module) {
  const upstreamUrl = process.env.STRIPE_MOCK_URL ?? 'http://127.0.0.1:12111';
  const logger: StripeSimLogger = { info: (message) => console.log(message), warn: (message) => console.warn(message) };
  const host = process.env.STRIPE_SIM_HOST ?? '127.0.0.1';
  const port = Number(process.env.STRIPE_SIM_PORT ?? 12113);
  startStripeSim({ upstreamUrl, host, port, logger }).then(
    (sim) => {
      logger.info(
        `stripe-sim (development tool, not for production) listening on ${sim.url}, stripe-mock at ${upstreamUrl}`,
      );
      const stop = (): void => {
        sim.close().catch((error: unknown) => {
          logger.warn(`stripe-sim: close failed: ${String(error)}`);
          process.exitCode = 1;
        });
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
    },
    (error: unknown) => {
      logger.warn(`stripe-sim: failed to start: ${String(error)}`);
      process.exitCode = 1;
    },
  );
}
