import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks } from '../support/stripe-events';

/**
 * Issue 21 §3: a receiver that hangs past WEBHOOK_TIMEOUT_MS (short here) gets the attempt recorded as a timeout and
 * the event again on the retry schedule, same webhook-id; the next attempt, answered at once, delivers it.
 */

type Json = Record<string, any>;

let system: InProcessSystem;
let receiver: Server;
let receiverUrl: string;
let companyId: string;
let admin: string;
const received: Array<{ id: string; body: string; headers: IncomingHttpHeaders; at: number }> = [];
/** Requests the receiver holds open, never answering (ended at the end so the server can close). */
const held: ServerResponse[] = [];
let hangNext = 0;

const TIMEOUT_MS = 700;
const CUSTOMER = 'cus_TimeoutPatientRef1';

async function api(method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${admin}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method === 'POST' && path === '/payments') headers['idempotency-key'] = `to-key-${ulid()}`;
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: (text ? JSON.parse(text) : {}) as Json };
}

beforeAll(async () => {
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({
        id: String(request.headers['webhook-id']),
        body: Buffer.concat(chunks).toString('utf8'),
        headers: request.headers,
        at: Date.now(),
      });
      if (hangNext > 0) {
        hangNext -= 1;
        held.push(response);
        return;
      }
      response.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  system = await startInProcessSystem('webhook_timeouts', {
    WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
    WEBHOOK_RETRY_SCHEDULE_MS: '300,300,300,300',
    WEBHOOK_ENDPOINT_CACHE_MS: '0',
  });
  companyId = await createCompany(system.ctx.db, { name: 'Slow River Cardiology' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-timeout-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51SlowRiverSecretKey01',
    webhookSigningSecrets: ['whsec_SlowRiverStripeSecret1'],
  });
});

afterAll(async () => {
  for (const response of held) response.destroy();
  await system?.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

it('a receiver hanging past the timeout: the attempt is a timeout, the retry (same webhook-id) delivers', async () => {
  const endpoint = (await api('POST', '/webhook-endpoints', { url: receiverUrl, enabledEvents: ['payment.succeeded'] }))
    .body as { id: string; secret: string };
  hangNext = 1;
  const created = await api('POST', '/payments', {
    amount: 2_400,
    currency: 'usd',
    customer: CUSTOMER,
    paymentMethod: 'pm_card_visa',
  });
  expect(created.status).toBe(202);
  const paymentId = created.body.id as string;

  const delivery = await waitFor(
    async () => (await api('GET', `/webhook-endpoints/${endpoint.id}/deliveries`)).body.items as Json[],
    (items) => items.some((d) => d.status === 'delivered'),
    { what: 'the delivery to succeed after the timed-out attempt', timeoutMs: 30_000 },
  ).then((items) => items.find((d) => d.status === 'delivered')!);

  const attempts = delivery.attempts as Json[];
  expect(attempts).toHaveLength(2);
  expect(attempts[0]).toMatchObject({ errorCode: 'timeout' });
  expect(attempts[0]!.statusCode).toBeUndefined();
  // Bounded by the timeout, not by the receiver (which never answered).
  expect(attempts[0]!.latencyMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
  expect(attempts[0]!.latencyMs).toBeLessThan(TIMEOUT_MS + 2_000);
  expect(attempts[0]!.nextRetryAt).toBeDefined();
  expect(attempts[1]).toMatchObject({ statusCode: 200 });
  expect(attempts[1]!.errorCode).toBeUndefined();

  // The receiver saw the event twice, same webhook-id and body, each verifying; it acknowledged the second.
  const forPayment = received.filter((r) => r.body.includes(paymentId));
  expect(forPayment).toHaveLength(2);
  expect(forPayment[1]!.id).toBe(forPayment[0]!.id);
  expect(forPayment[1]!.body).toBe(forPayment[0]!.body);
  expect(forPayment[1]!.id).toBe(delivery.eventId);
  for (const r of forPayment) {
    expect(() => new Webhook(endpoint.secret).verify(r.body, r.headers as any)).not.toThrow();
  }
}, 60_000);
