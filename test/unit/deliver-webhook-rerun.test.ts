import { deliverWebhook, type DeliverDeps } from '../../application/outgoing-webhooks/deliver-webhook';

/**
 * A delivery job run again after its success was recorded — its worker killed between the receiver's 2xx and
 * BullMQ's completion mark, or a Redis restart that lost the mark — must not send the event again (the chaos suite
 * saw a receiver accept one webhook-id twice, both recorded as delivered). A redelivery the company asked for does.
 */

const SECRET = `whsec_${Buffer.from('rerun-test-signing-secret-32byte').toString('base64')}`;

function fakeDeps(status: 'pending' | 'delivered') {
  const sent: string[] = [];
  const updates: unknown[] = [];
  const delivery = { _id: 'dlv_01J9Z8Q6V3M4N5P6Q7R8S9T0V1', endpointId: 'we_1', eventId: 'msg_1', status };
  const deps = {
    deliveries: {
      findOne: () => Promise.resolve(delivery),
      updateOne: (...args: unknown[]) => {
        updates.push(args);
        return Promise.resolve({ matchedCount: 1 });
      },
    },
    events: { findOne: () => Promise.resolve({ _id: 'msg_1', body: '{"type":"payment.succeeded"}' }) },
    endpoints: {
      findOne: () =>
        Promise.resolve({
          _id: 'we_1',
          companyId: 'co_1',
          url: 'https://hooks.example.com/x',
          disabled: false,
          secrets: [{ secret: SECRET }],
        }),
    },
    models: { WebhookEndpoint: { updateOne: () => Promise.resolve({ matchedCount: 0 }) } },
    sender: {
      send: (_url: string, headers: Record<string, string>) => {
        sent.push(headers['webhook-id']!);
        return Promise.resolve({ statusCode: 204, latencyMs: 3 });
      },
    },
    enqueueAudit: () => Promise.resolve(),
    retryScheduleMs: [1_000],
    disableAfterMs: 60_000,
  } as unknown as DeliverDeps;
  return { deps, sent, updates };
}

it('a job run again after its delivery was recorded sends nothing and writes nothing', async () => {
  const { deps, sent, updates } = fakeDeps('delivered');
  await expect(deliverWebhook(deps, { deliveryId: 'dlv_1', attempt: 1, finalAttempt: false })).resolves.toBe(
    'already_delivered',
  );
  expect(sent).toEqual([]);
  expect(updates).toEqual([]);
});

it('a redelivery the company asked for sends a delivered event again, same webhook-id', async () => {
  const { deps, sent } = fakeDeps('delivered');
  await expect(
    deliverWebhook(deps, { deliveryId: 'dlv_1', attempt: 1, finalAttempt: false, redelivery: true }),
  ).resolves.toBe('delivered');
  expect(sent).toEqual(['msg_1']);
});

it('a pending delivery is sent', async () => {
  const { deps, sent } = fakeDeps('pending');
  await expect(deliverWebhook(deps, { deliveryId: 'dlv_1', attempt: 1, finalAttempt: false })).resolves.toBe(
    'delivered',
  );
  expect(sent).toEqual(['msg_1']);
});
