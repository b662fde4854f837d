import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { enqueueWebhookDelivery } from '../../queues/webhook-deliveries.queue';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { insertOutgoingDeliveries } from '../support/records';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';

/**
 * Issue 21 §3: the workers process is SIGKILLed while a webhook delivery is in flight (the receiver holds the
 * request open). Nothing is lost: a new workers process takes the stalled job back (BullMQ's stalled-job check,
 * WEBHOOK_STALLED_CHECK_MS short here), the receiver gets the event again with the same webhook-id and acknowledges
 * it, and the delivery ends delivered, acknowledged once.
 */

let ctx: TestContext;
let receiver: Server;
let receiverUrl: string;
let first: NodeProcess | undefined;
let second: NodeProcess | undefined;
const received: Array<{ id: string; body: string; headers: IncomingHttpHeaders; acknowledged: boolean }> = [];
const held: ServerResponse[] = [];
let holdNext = 1;

const RETRY_SCHEDULE = '60000,60000';
const SECRET = `whsec_${Buffer.from('kill-test-signing-secret-32bytes').toString('base64')}`;

beforeAll(async () => {
  assertBuildIsCurrent();
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const hold = holdNext > 0;
      if (hold) holdNext -= 1;
      received.push({
        id: String(request.headers['webhook-id']),
        body: Buffer.concat(chunks).toString('utf8'),
        headers: request.headers,
        acknowledged: !hold,
      });
      if (hold) held.push(response);
      else response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  ctx = await createTestContext('webhook_kill', {
    WEBHOOK_STALLED_CHECK_MS: '2000',
    WEBHOOK_TIMEOUT_MS: '10000',
    // A retry (rather than the stalled-job recovery) would come only a minute later: past the test's waits.
    WEBHOOK_RETRY_SCHEDULE_MS: RETRY_SCHEDULE,
  });
}, 60_000);

afterAll(async () => {
  for (const response of held) response.destroy();
  await first?.kill();
  await second?.kill();
  await ctx?.close();
  await new Promise<void>((resolve) => receiver.close(() => resolve()));
});

it('a delivery in flight when its worker is SIGKILLed is sent again by the next worker, same webhook-id', async () => {
  const companyId = await createCompany(ctx.db, { name: 'Northgate Pediatrics' });
  const { WebhookEndpoint, WebhookDelivery } = ctx.db.models;
  const endpointId = `we_${ulid()}`;
  await WebhookEndpoint.create({
    _id: endpointId,
    companyId,
    url: receiverUrl,
    enabledEvents: ['*'],
    disabled: false,
    secrets: [{ secret: await ctx.db.encryption.encrypt(companyId, SECRET), createdAt: new Date() }],
  });
  const { eventId, body, deliveryIds } = await insertOutgoingDeliveries(ctx.db.models, {
    companyId,
    endpointIds: [endpointId],
    amount: 4_200,
  });
  const deliveryId = deliveryIds[0]!;

  first = startNodeProcess('workers', 'workers/main.js', ctx.env);
  await first.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });
  await enqueueWebhookDelivery(ctx.queues['webhook-deliveries'], { deliveryId }, RETRY_SCHEDULE.split(',').map(Number));
  await waitFor(
    async () => received.length,
    (n) => n === 1,
    { what: 'the receiver to hold the first request' },
  );
  await first.kill();
  expect(first.exitStatus?.signal).toBe('SIGKILL');
  // Nothing was recorded by the killed worker: the attempt never finished.
  expect((await WebhookDelivery.findById(deliveryId).lean())?.status).toBe('pending');

  second = startNodeProcess('workers', 'workers/main.js', ctx.env);
  await second.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });
  const delivery = await waitFor(
    () => WebhookDelivery.findById(deliveryId).lean(),
    (d) => d?.status === 'delivered',
    { what: 'the delivery to be taken back and delivered', timeoutMs: 30_000 },
  );

  expect(received).toHaveLength(2);
  expect(received[1]!.id).toBe(eventId);
  expect(received[1]!.id).toBe(received[0]!.id);
  expect(received[1]!.body).toBe(body);
  expect(received.filter((r) => r.acknowledged)).toHaveLength(1);
  expect(() => new Webhook(SECRET).verify(received[1]!.body, received[1]!.headers as any)).not.toThrow();
  // One attempt recorded, the successful one (the killed one never finished); delivered once.
  expect(delivery!.attempts).toHaveLength(1);
  expect(delivery!.attempts[0]).toMatchObject({ statusCode: 204 });
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  expect(received).toHaveLength(2);
  expect(second.text()).not.toContain(SECRET);
}, 120_000);
