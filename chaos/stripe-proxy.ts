import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A recording proxy in front of stripe-sim: what the system asked Stripe and what it was answered, and the Stripe
 * faults the schedule turns on for a while. stripe-sim can drop a connection only before it processed a request; this
 * proxy also drops it after Stripe processed it (the charge was made, the answer is lost), the case idempotency keys
 * exist for.
 */
export type StripeFaultKind = 'stripe_slow' | 'stripe_5xx' | 'stripe_reset_after' | 'stripe_429';

export interface ProxiedRequest {
  method: string;
  path: string;
  idempotencyKey: string | undefined;
  /** The status the system received; 'reset' when the connection was dropped (after processing for reset_after). */
  answered: number | 'reset';
  fault: StripeFaultKind | undefined;
  /** For a PaymentIntent created: its id, and the payment it was made for (its metadata). */
  intentId?: string;
  paymentId?: string;
}

export interface StripeProxy {
  readonly url: string;
  readonly requests: ProxiedRequest[];
  /** Every request, with probability `share`, meets `kind` until `clear(kind)`. */
  inject(kind: StripeFaultKind, share: number, delayMs?: number): void;
  /** Ends the `kind` fault (not a later one that replaced it). */
  clear(kind: StripeFaultKind): void;
  close(): Promise<void>;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host'];

export async function startStripeProxy(upstreamUrl: string, random: () => number): Promise<StripeProxy> {
  const upstream = new URL(upstreamUrl);
  const agent = new http.Agent({ keepAlive: true });
  const requests: ProxiedRequest[] = [];
  let fault: { kind: StripeFaultKind; share: number; delayMs: number } | undefined;

  const forward = (req: http.IncomingMessage, body: Buffer) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const headers = { ...req.headers, 'content-length': String(body.length) };
      delete headers.connection;
      const outgoing = http.request(
        { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 502, headers: response.headers, body: Buffer.concat(chunks) }),
          );
          response.on('error', reject);
        },
      );
      outgoing.on('error', reject);
      outgoing.end(body);
    });

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const active = fault && random() < fault.share ? fault : undefined;
        const record: ProxiedRequest = {
          method: req.method ?? 'GET',
          path: new URL(req.url ?? '/', 'http://proxy').pathname,
          idempotencyKey: [req.headers['idempotency-key']].flat()[0],
          answered: 0,
          fault: active?.kind,
        };
        requests.push(record);
        const answer = (status: number, headers: http.OutgoingHttpHeaders, payload: Buffer | string): void => {
          record.answered = status;
          if (res.destroyed) return;
          res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(payload) });
          res.end(payload);
        };
        const stripeError = (status: number, type: string, message: string, code?: string): void =>
          answer(
            status,
            { 'content-type': 'application/json' },
            JSON.stringify({ error: { type, message, ...(code ? { code } : {}) } }),
          );
        if (active?.kind === 'stripe_5xx') return stripeError(500, 'api_error', 'An unknown error occurred');
        if (active?.kind === 'stripe_429')
          return stripeError(429, 'invalid_request_error', 'Too many requests', 'rate_limit');
        if (active?.kind === 'stripe_slow') await sleep(active.delayMs);
        let upstreamAnswer;
        try {
          upstreamAnswer = await forward(req, body);
        } catch (error) {
          return stripeError(502, 'api_error', `chaos proxy: stripe-sim unreachable (${(error as Error).message})`);
        }
        if (record.method === 'POST' && record.path === '/v1/payment_intents' && upstreamAnswer.status < 300) {
          record.paymentId = new URLSearchParams(body.toString('utf8')).get('metadata[payment_id]') ?? undefined;
          record.intentId = String((JSON.parse(upstreamAnswer.body.toString('utf8')) as { id?: unknown }).id);
        }
        if (active?.kind === 'stripe_reset_after') {
          // Stripe did the work; the answer never arrives.
          record.answered = 'reset';
          req.socket.destroy();
          return;
        }
        const headers: http.OutgoingHttpHeaders = { ...upstreamAnswer.headers };
        for (const name of HOP_BY_HOP) delete headers[name];
        answer(upstreamAnswer.status, headers, upstreamAnswer.body);
      })().catch(() => req.socket.destroy());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    inject(kind, share, delayMs = 0) {
      fault = { kind, share, delayMs };
    },
    clear(kind) {
      if (fault?.kind === kind) fault = undefined;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}
