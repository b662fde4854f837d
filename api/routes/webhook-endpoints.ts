import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ulid } from '../../platform/ids';
import { z } from 'zod';
import type { AuditAction } from '../../domain/audit-actions';
import { WEBHOOK_EVENT_TYPES } from '../../domain/webhook-catalog';
import {
  SECRET_ROTATION_GRACE_MS,
  webhookEndpointCreateSchema,
  webhookEndpointUpdateSchema,
  webhookUrlProblem,
  type WebhookUrlRules,
} from '../../domain/webhook-endpoint';
import type { Database } from '../../models';
import {
  LIVE_ENDPOINT,
  type OutgoingEventRecord,
  type WebhookDeliveryRecord,
  type WebhookEndpointRecord,
} from '../../models/outgoing-webhook.model';
import { PENDING_AUDIT_FIELD } from '../../models/pending-audit';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import { enqueueWebhookDelivery, type WebhookDeliveryJob } from '../../queues/webhook-deliveries.queue';
import type { AccessGuard, CallerEvent } from '../access-guard';
import { writeAudited } from '../audited-change';
import { ApiError } from '../errors';
import { parse, scopeIdSchema } from '../validation';

export interface WebhookEndpointRouteDeps {
  db: Pick<Database, 'models' | 'encryption'>;
  guard: Pick<AccessGuard, 'authorize' | 'prepare' | 'send'>;
  deliveriesQueue: Queue<WebhookDeliveryJob>;
  urlRules: WebhookUrlRules;
  retryScheduleMs: readonly number[];
}

const PERMISSION = 'webhooks:manage';

export const webhookCompanyParams = z.strictObject({ companyId: scopeIdSchema });
export const webhookEndpointParams = webhookCompanyParams.extend({
  endpointId: z.string().regex(/^we_[0-9A-Z]{26}$/, 'a webhook endpoint id (we_…)'),
});
export const webhookDeliveryParams = webhookEndpointParams.extend({
  deliveryId: z.string().regex(/^dlv_[0-9A-Z]{26}$/, 'a delivery id (dlv_…)'),
});
const limit = z.coerce.number().int().min(1).max(100).default(25);
export const deliveriesQuery = z.strictObject({
  limit,
  after: z
    .string()
    .regex(/^dlv_[0-9A-Z]{26}$/)
    .optional()
    .meta({ description: 'The `nextCursor` of the previous page (newest first).' }),
});
export const endpointsQuery = z.strictObject({
  limit,
  after: z
    .string()
    .regex(/^we_[0-9A-Z]{26}$/)
    .optional()
    .meta({ description: 'The `nextCursor` of the previous page.' }),
});
export const eventsQuery = z.strictObject({
  limit,
  type: z.enum(WEBHOOK_EVENT_TYPES).optional(),
  after: z
    .string()
    .regex(/^msg_[0-9A-Z]{26}$/)
    .optional()
    .meta({ description: 'The id of the last event you have: the events after it, oldest first.' }),
});

/** Standard Webhooks' secret format: `whsec_` and the base64 of 32 random bytes. */
function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

export function presentEndpoint(endpoint: WebhookEndpointRecord, now = new Date()) {
  const previous = endpoint.secrets.find((entry) => entry.expiresAt && new Date(entry.expiresAt) > now);
  return {
    id: endpoint._id,
    companyId: endpoint.companyId,
    ...(endpoint.officeId ? { officeId: endpoint.officeId } : {}),
    url: endpoint.url,
    enabledEvents: endpoint.enabledEvents,
    ...(endpoint.description ? { description: endpoint.description } : {}),
    disabled: endpoint.disabled,
    ...(endpoint.disabled && endpoint.disabledReason ? { disabledReason: endpoint.disabledReason } : {}),
    ...(previous?.expiresAt ? { previousSecretExpiresAt: new Date(previous.expiresAt).toISOString() } : {}),
    createdAt: new Date(endpoint.createdAt).toISOString(),
    updatedAt: new Date(endpoint.updatedAt).toISOString(),
  };
}

export function presentDelivery(delivery: WebhookDeliveryRecord) {
  return {
    id: delivery._id,
    endpointId: delivery.endpointId,
    eventId: delivery.eventId,
    eventType: delivery.eventType,
    status: delivery.status,
    redeliveries: delivery.redeliveries,
    attempts: (delivery.attempts ?? []).map((a) => ({
      at: new Date(a.at).toISOString(),
      ...(a.statusCode !== undefined ? { statusCode: a.statusCode } : {}),
      latencyMs: a.latencyMs,
      ...(a.errorCode ? { errorCode: a.errorCode } : {}),
      ...(a.responseExcerpt ? { responseExcerpt: a.responseExcerpt } : {}),
      ...(a.nextRetryAt ? { nextRetryAt: new Date(a.nextRetryAt).toISOString() } : {}),
    })),
    ...(delivery.deliveredAt ? { deliveredAt: new Date(delivery.deliveredAt).toISOString() } : {}),
    createdAt: new Date(delivery.createdAt).toISOString(),
  };
}

export function presentEvent(event: OutgoingEventRecord) {
  return {
    id: event._id,
    type: event.type,
    ...(event.officeId ? { officeId: event.officeId } : {}),
    occurredAt: new Date(event.occurredAt).toISOString(),
    createdAt: new Date(event.createdAt).toISOString(),
    payload: JSON.parse(event.body) as unknown,
  };
}

export function registerWebhookEndpointRoutes(app: FastifyInstance, deps: WebhookEndpointRouteDeps): void {
  const { WebhookEndpoint, WebhookDelivery, OutgoingEvent, Company } = deps.db.models;
  const base = '/v1/companies/:companyId/webhook-endpoints';

  async function authorize(request: FastifyRequest, companyId: string, resourceId?: string) {
    await deps.guard.authorize(request, PERMISSION, {
      companyId,
      resource: { type: resourceId ? 'webhook_endpoint' : 'company', id: resourceId ?? companyId },
    });
    if (!(await Company.exists({ _id: companyId }))) throw new ApiError(404, 'company_not_found', 'no such company');
  }

  async function endpointOf(companyId: string, endpointId: string) {
    const endpoint = await WebhookEndpoint.findOne({ _id: endpointId, companyId, ...LIVE_ENDPOINT }).lean();
    if (!endpoint) throw new ApiError(404, 'webhook_endpoint_not_found', 'no such webhook endpoint');
    return endpoint;
  }

  function checkUrl(url: string) {
    const problem = webhookUrlProblem(url, deps.urlRules);
    if (problem)
      throw new ApiError(422, 'webhook_url_refused', `the url ${problem}`, [{ field: 'url', message: problem }]);
  }

  /**
   * A change to an endpoint with its audit event stored on it in the same write (api/audited-change.ts): 503
   * `audit_unavailable` (saying it is saved) when the event cannot be queued, and the outbox sweep queues it later.
   */
  function auditedChange<T>(
    request: FastifyRequest,
    endpointId: string,
    action: AuditAction,
    event: Omit<CallerEvent, 'action'>,
    write: (pendingAudit: Record<string, unknown>) => Promise<T>,
  ): Promise<T> {
    return writeAudited(request, deps.guard, {
      holder: WebhookEndpoint,
      id: endpointId,
      event: { ...event, action },
      write,
    });
  }

  /**
   * An audited change to an existing endpoint, written on condition of what was read (`before`): a concurrent change
   * is refused 409, not silently merged (or lost on FerretDB).
   */
  async function changeEndpoint(
    request: FastifyRequest,
    before: WebhookEndpointRecord,
    action: AuditAction,
    update: { set: Record<string, unknown>; unset?: Record<string, 1>; changes?: CallerEvent['changes'] },
  ): Promise<void> {
    const { _id: endpointId, companyId } = before;
    await auditedChange(
      request,
      endpointId,
      action,
      {
        companyId,
        ...(before.officeId ? { officeId: before.officeId } : {}),
        resource: { type: 'webhook_endpoint', id: endpointId },
        ...(update.changes ? { changes: update.changes } : {}),
      },
      async (pendingAudit) => {
        const unset = update.unset && Object.keys(update.unset).length > 0 ? { $unset: update.unset } : {};
        const written = await WebhookEndpoint.updateOne(
          { _id: endpointId, companyId, updatedAt: before.updatedAt, ...LIVE_ENDPOINT },
          { $set: { ...update.set, ...pendingAudit }, ...unset },
        );
        if (written.matchedCount === 0) {
          throw new ApiError(409, 'concurrent_change', 'the endpoint changed meanwhile; read it again and retry');
        }
      },
    );
  }

  const encryptSecret = (companyId: string, secret: string) => deps.db.encryption.encrypt(companyId, secret);

  app.post(base, async (request, reply) => {
    const { companyId } = parse(webhookCompanyParams, request.params);
    const input = parse(webhookEndpointCreateSchema, request.body);
    await authorize(request, companyId);
    checkUrl(input.url);
    const secret = newSecret();
    const now = new Date();
    const _id = `we_${ulid()}`;
    const encrypted = await encryptSecret(companyId, secret);
    await auditedChange(
      request,
      _id,
      'webhook_endpoint.created',
      {
        companyId,
        ...(input.officeId ? { officeId: input.officeId } : {}),
        resource: { type: 'webhook_endpoint', id: _id },
        changes: [{ field: 'enabledEvents', before: null, after: input.enabledEvents.join(',').slice(0, 200) }],
      },
      (pendingAudit) =>
        WebhookEndpoint.create({
          _id,
          companyId,
          ...(input.officeId ? { officeId: input.officeId } : {}),
          url: input.url,
          enabledEvents: input.enabledEvents,
          ...(input.description ? { description: input.description } : {}),
          disabled: input.disabled ?? false,
          ...(input.disabled ? { disabledReason: 'disabled_by_user' } : {}),
          secrets: [{ secret: encrypted, createdAt: now }],
          // `pendingAudit.<key>` paths as a nested object: a new document has no field to set a path in.
          [PENDING_AUDIT_FIELD]: Object.fromEntries(
            Object.entries(pendingAudit).map(([path, events]) => [path.slice(PENDING_AUDIT_FIELD.length + 1), events]),
          ),
        }),
    );
    const created = await endpointOf(companyId, _id);
    return reply.status(201).send({ ...presentEndpoint(created), secret });
  });

  app.get(base, async (request) => {
    const { companyId } = parse(webhookCompanyParams, request.params);
    const query = parse(endpointsQuery, request.query);
    await authorize(request, companyId);
    const page = await WebhookEndpoint.find({
      companyId,
      ...LIVE_ENDPOINT,
      ...(query.after ? { _id: { $lt: query.after } } : {}),
    })
      .sort({ _id: -1 })
      .limit(query.limit + 1)
      .lean();
    const items = page.slice(0, query.limit).map((endpoint) => presentEndpoint(endpoint));
    return { items, nextCursor: page.length > query.limit ? (items.at(-1)?.id ?? null) : null };
  });

  app.get(`${base}/:endpointId`, async (request) => {
    const { companyId, endpointId } = parse(webhookEndpointParams, request.params);
    await authorize(request, companyId, endpointId);
    return presentEndpoint(await endpointOf(companyId, endpointId));
  });

  app.patch(`${base}/:endpointId`, async (request) => {
    const { companyId, endpointId } = parse(webhookEndpointParams, request.params);
    const input = parse(webhookEndpointUpdateSchema, request.body);
    await authorize(request, companyId, endpointId);
    const before = await endpointOf(companyId, endpointId);
    if (input.url !== undefined) checkUrl(input.url);
    const set: Record<string, unknown> = {};
    const unset: Record<string, 1> = {};
    if (input.url !== undefined) set.url = input.url;
    if (input.enabledEvents !== undefined) set.enabledEvents = input.enabledEvents;
    if (input.description !== undefined) set.description = input.description;
    if (input.disabled !== undefined) {
      set.disabled = input.disabled;
      if (input.disabled) set.disabledReason = 'disabled_by_user';
      else Object.assign(unset, { disabledReason: 1, failingSince: 1 });
    }
    const changes = (['url', 'disabled', 'enabledEvents'] as const)
      .filter((field) => input[field] !== undefined)
      .map((field) => ({
        field,
        before: String(before[field]).slice(0, 200),
        after: String(input[field]).slice(0, 200),
      }));
    await changeEndpoint(request, before, 'webhook_endpoint.updated', { set, unset, changes });
    return presentEndpoint(await endpointOf(companyId, endpointId));
  });

  app.delete(`${base}/:endpointId`, async (request, reply) => {
    const { companyId, endpointId } = parse(webhookEndpointParams, request.params);
    await authorize(request, companyId, endpointId);
    const before = await endpointOf(companyId, endpointId);
    // Marked deleted (gone for every reader) with its audit event in one write; removed once the event is queued,
    // here or by the outbox sweep.
    await changeEndpoint(request, before, 'webhook_endpoint.deleted', { set: { deletedAt: new Date() } });
    await WebhookEndpoint.deleteOne({ _id: endpointId, companyId, deletedAt: { $exists: true } });
    return reply.status(204).send();
  });

  app.post(`${base}/:endpointId/rotate-secret`, async (request) => {
    const { companyId, endpointId } = parse(webhookEndpointParams, request.params);
    await authorize(request, companyId, endpointId);
    const before = await endpointOf(companyId, endpointId);
    const now = new Date();
    const current = before.secrets.find((entry) => !entry.expiresAt);
    const secret = newSecret();
    const secrets = [
      { secret: await encryptSecret(companyId, secret), createdAt: now },
      ...(typeof current?.secret === 'string'
        ? [
            {
              secret: await encryptSecret(companyId, current.secret),
              createdAt: current.createdAt,
              expiresAt: new Date(now.getTime() + SECRET_ROTATION_GRACE_MS),
            },
          ]
        : []),
    ];
    await changeEndpoint(request, before, 'webhook_endpoint.secret_rotated', { set: { secrets } });
    return { ...presentEndpoint(await endpointOf(companyId, endpointId), now), secret };
  });

  app.get(`${base}/:endpointId/deliveries`, async (request) => {
    const { companyId, endpointId } = parse(webhookEndpointParams, request.params);
    const query = parse(deliveriesQuery, request.query);
    await authorize(request, companyId, endpointId);
    await endpointOf(companyId, endpointId);
    const page = await WebhookDelivery.find({
      companyId,
      endpointId,
      ...(query.after ? { _id: { $lt: query.after } } : {}),
    })
      .sort({ _id: -1 })
      .limit(query.limit + 1)
      .lean();
    const items = page.slice(0, query.limit).map(presentDelivery);
    return { items, nextCursor: page.length > query.limit ? (items.at(-1)?.id ?? null) : null };
  });

  app.post(`${base}/:endpointId/deliveries/:deliveryId/redeliver`, async (request, reply) => {
    const { companyId, endpointId, deliveryId } = parse(webhookDeliveryParams, request.params);
    await authorize(request, companyId, endpointId);
    const endpoint = await endpointOf(companyId, endpointId);
    if (endpoint.disabled) {
      throw new ApiError(409, 'webhook_endpoint_disabled', 'the endpoint is disabled; enable it first');
    }
    // The audit event is stored on the delivery in the same write as the redelivery it records (api/audited-change.ts):
    // a crash or a Redis outage after that write leaves it for the outbox sweep, which records it once.
    const delivery = await writeAudited(request, deps.guard, {
      holder: WebhookDelivery,
      id: deliveryId,
      event: {
        action: 'webhook_delivery.redelivered',
        companyId,
        ...(endpoint.officeId ? { officeId: endpoint.officeId } : {}),
        resource: { type: 'webhook_delivery', id: deliveryId },
      },
      write: async (pendingAudit) => {
        const updated = await WebhookDelivery.findOneAndUpdate(
          { _id: deliveryId, companyId, endpointId },
          { $inc: { redeliveries: 1 }, $set: { status: 'pending', nextAttemptAt: new Date(), ...pendingAudit } },
          { new: true },
        ).lean();
        if (!updated) throw new ApiError(404, 'webhook_delivery_not_found', 'no such delivery');
        try {
          // Bounded: BullMQ waits for a connection that may never come, and the caller must get its 503.
          await withDeadline(
            enqueueWebhookDelivery(
              deps.deliveriesQueue,
              { deliveryId, redelivery: updated.redeliveries },
              deps.retryScheduleMs,
            ),
            ENQUEUE_DEADLINE_MS,
            'enqueue',
          );
        } catch (error) {
          request.log.error({ err: error }, 'could not enqueue a redelivery');
          // The request stays in the audit trail (the sweep records its stored event); asking again is a new one.
          throw new ApiError(503, 'unavailable', 'the redelivery could not be queued; try again');
        }
        return updated;
      },
    });
    return reply.status(202).send(presentDelivery(delivery));
  });

  app.get('/v1/companies/:companyId/events', async (request) => {
    const { companyId } = parse(webhookCompanyParams, request.params);
    const query = parse(eventsQuery, request.query);
    await authorize(request, companyId);
    const page = await OutgoingEvent.find({
      companyId,
      ...(query.type ? { type: query.type } : {}),
      ...(query.after ? { _id: { $gt: query.after } } : {}),
    })
      .sort({ _id: 1 })
      .limit(query.limit + 1)
      .lean();
    const items = page.slice(0, query.limit).map(presentEvent);
    return { items, nextCursor: page.length > query.limit ? (items.at(-1)?.id ?? null) : null };
  });
}
