import { ulid } from 'ulid';
import type { AuditAction } from '../../domain/audit-actions';
import { createCompany } from '../../models/companies';
import { MAINTENANCE_JOBS } from '../../queues/maintenance.queue';
import { webhookDeliveryJobId } from '../../queues/webhook-deliveries.queue';
import { waitFor } from '../support/harness';
import { insertOutgoingDeliveries } from '../support/records';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

/**
 * Issue 21 §3: a change to a webhook endpoint (created, updated, secret rotated, deleted) keeps its audit event on
 * the endpoint in the same write as the change. With Redis down (a second api pointed at a dead port) the change
 * answers 503 `audit_unavailable` saying it is saved, and the outbox sweep records the event once Redis is back.
 * A redelivery keeps its event on the delivery the same way.
 */

let system: InProcessSystem;
let companyId: string;
let admin: string;

const DEAD_URL = 'http://127.0.0.1:9/hooks';

async function call(url: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${url}/v1/companies/${companyId}/webhook-endpoints${path}`, {
    method,
    headers: {
      authorization: `Bearer ${admin}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, text, body: text ? JSON.parse(text) : undefined };
}

async function recorded(action: AuditAction, endpointId: string) {
  return system.ctx.db.models.AuditEvent.find({ companyId, action, 'resource.id': endpointId }).lean();
}

async function sweepAsScheduled() {
  const job = await system.ctx.queues.maintenance.add(MAINTENANCE_JOBS.outboxSweep, {}, { jobId: `sweep-${ulid()}` });
  const state = await waitFor(
    () => job.getState(),
    (s) => s === 'completed' || s === 'failed',
    { what: 'the outbox sweep to run' },
  );
  expect(state).toBe('completed');
}

async function auditQueueIdle() {
  await waitFor(
    () => system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed'),
    (c) => (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0,
    { what: 'the audit queue to drain' },
  );
}

async function stored(endpointId: string) {
  return system.ctx.rawMongo
    .db()
    .collection('webhook_endpoints')
    .findOne({ _id: endpointId as never }, { projection: { pendingAudit: 1, deletedAt: 1 } });
}

const pendingKeys = async (endpointId: string) =>
  Object.keys(((await stored(endpointId))?.pendingAudit as object | undefined) ?? {});

beforeAll(async () => {
  system = await startInProcessSystem('webhook_endpoint_audit', {
    OUTBOX_SWEEP_EVERY_MS: '3600000',
    OUTBOX_STALE_AFTER_MS: '1',
  });
  companyId = await createCompany(system.ctx.db, { name: 'Lakeside Dermatology' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-hooks-admin' });
});

afterAll(async () => {
  await system?.close();
});

describe('webhook endpoint changes while Redis is down', () => {
  it('each change answers 503 audit_unavailable, stands, and its audit event reaches the trail once after the sweep', async () => {
    const created = await system.withRedisDownApi((url) =>
      call(url, 'POST', '', { url: DEAD_URL, enabledEvents: ['payment.succeeded'] }),
    );
    expect(created.status).toBe(503);
    expect(created.body.error.code).toBe('audit_unavailable');
    const [endpoint] = (await call(system.url, 'GET', '')).body.items as Array<{ id: string; url: string }>;
    expect(endpoint).toMatchObject({ url: DEAD_URL });
    const endpointId = endpoint!.id;
    expect(await pendingKeys(endpointId)).toHaveLength(1);

    const updated = await system.withRedisDownApi((url) =>
      call(url, 'PATCH', `/${endpointId}`, { enabledEvents: ['*'], disabled: true }),
    );
    expect(updated.status).toBe(503);
    const rotated = await system.withRedisDownApi((url) => call(url, 'POST', `/${endpointId}/rotate-secret`));
    expect(rotated.status).toBe(503);
    const read = await call(system.url, 'GET', `/${endpointId}`);
    expect(read.body).toMatchObject({ enabledEvents: ['*'], disabled: true });
    expect(read.body.previousSecretExpiresAt).toBeDefined();
    expect(await pendingKeys(endpointId)).toHaveLength(3);
    await auditQueueIdle();
    expect(await recorded('webhook_endpoint.created', endpointId)).toHaveLength(0);

    await sweepAsScheduled();
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    const createdEvents = await recorded('webhook_endpoint.created', endpointId);
    expect(createdEvents).toHaveLength(1);
    expect(createdEvents[0]).toMatchObject({
      actor: { type: 'user', id: 'usr-hooks-admin' },
      route: 'POST /v1/companies/:companyId/webhook-endpoints',
    });
    const updatedEvents = await recorded('webhook_endpoint.updated', endpointId);
    expect(updatedEvents).toHaveLength(1);
    expect(updatedEvents[0]!.changes).toEqual(
      expect.arrayContaining([{ field: 'enabledEvents', before: 'payment.succeeded', after: '*' }]),
    );
    expect(await recorded('webhook_endpoint.secret_rotated', endpointId)).toHaveLength(1);
    expect(await pendingKeys(endpointId)).toEqual([]);

    // Deleted while Redis is down: gone at once for every reader, audited by the sweep, then removed.
    const deleted = await system.withRedisDownApi((url) => call(url, 'DELETE', `/${endpointId}`));
    expect(deleted.status).toBe(503);
    expect(deleted.body.error.code).toBe('audit_unavailable');
    expect((await call(system.url, 'GET', `/${endpointId}`)).status).toBe(404);
    expect((await call(system.url, 'GET', '')).body.items).toEqual([]);
    expect(await recorded('webhook_endpoint.deleted', endpointId)).toHaveLength(0);
    await sweepAsScheduled();
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    expect(await recorded('webhook_endpoint.deleted', endpointId)).toHaveLength(1);
    expect(await stored(endpointId)).toBeNull();
  });

  it('with Redis up, each change is audited at once and leaves nothing pending', async () => {
    const created = await call(system.url, 'POST', '', { url: DEAD_URL, enabledEvents: ['refund.failed'] });
    expect(created.status).toBe(201);
    const endpointId = created.body.id as string;
    expect((await call(system.url, 'PATCH', `/${endpointId}`, { description: 'ledger sync' })).status).toBe(200);
    await auditQueueIdle();
    expect(await recorded('webhook_endpoint.created', endpointId)).toHaveLength(1);
    expect(await recorded('webhook_endpoint.updated', endpointId)).toHaveLength(1);
    expect(await pendingKeys(endpointId)).toEqual([]);
    expect((await call(system.url, 'DELETE', `/${endpointId}`)).status).toBe(204);
    await auditQueueIdle();
    expect(await recorded('webhook_endpoint.deleted', endpointId)).toHaveLength(1);
    expect(await stored(endpointId)).toBeNull();
  });
});

describe('a redelivery keeps its audit event on the delivery until it is queued', () => {
  async function deliveryOfNewEndpoint() {
    const created = await call(system.url, 'POST', '', { url: DEAD_URL, enabledEvents: ['*'] });
    expect(created.status).toBe(201);
    const endpointId = created.body.id as string;
    const { deliveryIds } = await insertOutgoingDeliveries(system.ctx.db.models, {
      companyId,
      endpointIds: [endpointId],
      status: 'failed',
    });
    const deliveryId = deliveryIds[0]!;
    return { endpointId, deliveryId, path: `/${endpointId}/deliveries/${deliveryId}/redeliver` };
  }
  const redelivered = (deliveryId: string) => recorded('webhook_delivery.redelivered', deliveryId);
  const deliveryDoc = (deliveryId: string) =>
    system.ctx.rawMongo
      .db()
      .collection('webhook_deliveries')
      .findOne({ _id: deliveryId as never }, { projection: { pendingAudit: 1, redeliveries: 1 } });

  it('with Redis down: 503 saying to try again, the request kept with its event, recorded once by the sweep', async () => {
    const { deliveryId, path } = await deliveryOfNewEndpoint();
    const answer = await system.withRedisDownApi((url) => call(url, 'POST', path));
    expect(answer.status).toBe(503);
    expect(answer.body.error.code).toBe('unavailable');
    const kept = await deliveryDoc(deliveryId);
    expect(kept?.redeliveries).toBe(1);
    expect(Object.keys((kept?.pendingAudit as object | undefined) ?? {})).toHaveLength(1);
    await auditQueueIdle();
    expect(await redelivered(deliveryId)).toHaveLength(0);

    await sweepAsScheduled();
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    const events = await redelivered(deliveryId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      actor: { type: 'user', id: 'usr-hooks-admin' },
      resource: { type: 'webhook_delivery', id: deliveryId },
    });
    expect((await deliveryDoc(deliveryId))?.pendingAudit ?? {}).toEqual({});
  });

  it('with Redis up: 202, the redelivery queued, audited at once, nothing left pending', async () => {
    const { deliveryId, path } = await deliveryOfNewEndpoint();
    const answer = await call(system.url, 'POST', path);
    expect(answer.status).toBe(202);
    expect(answer.body).toMatchObject({ id: deliveryId, status: 'pending', redeliveries: 1 });
    expect(
      await system.ctx.queues['webhook-deliveries'].getJob(webhookDeliveryJobId({ deliveryId, redelivery: 1 })),
    ).toBeDefined();
    await auditQueueIdle();
    expect(await redelivered(deliveryId)).toHaveLength(1);
    expect((await deliveryDoc(deliveryId))?.pendingAudit ?? {}).toEqual({});
    await sweepAsScheduled();
    await auditQueueIdle();
    expect(await redelivered(deliveryId)).toHaveLength(1);
  });
});
