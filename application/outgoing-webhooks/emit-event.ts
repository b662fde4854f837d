import { ulid } from '../../platform/ids';
import type { AuditEvent } from '../../domain/audit-event';
import {
  endpointWants,
  webhookEventTypeOf,
  type WebhookEventType,
  type WebhookPayload,
} from '../../domain/webhook-catalog';
import type { Models } from '../../models';
import { isDuplicateKeyError } from '../../models/errors';
import {
  LIVE_ENDPOINT,
  pruneExpiredWebhookRecords,
  type OutgoingEventRecord,
  type WebhookEndpointRecord,
} from '../../models/outgoing-webhook.model';
import type { Logger } from '../../platform/logger';
import type { WebhookDeliveryJob } from '../../queues/webhook-deliveries.queue';
import { readEventData } from './event-data';

export type EndpointView = Pick<WebhookEndpointRecord, '_id' | 'officeId' | 'enabledEvents' | 'disabled'>;

export interface EmitDeps {
  models: Pick<
    Models,
    'Payment' | 'Refund' | 'Subscription' | 'Invoice' | 'SavedPaymentMethod' | 'OutgoingEvent' | 'WebhookDelivery'
  >;
  /** A company's endpoints (cached briefly: see `cachedEndpoints`). */
  endpointsOf(companyId: string): Promise<EndpointView[]>;
  enqueueDelivery(job: WebhookDeliveryJob): Promise<void>;
  logger: Logger;
}

/** A company's live endpoints, as a fan-out reads them. */
export async function liveEndpointsOf(
  model: Pick<Models, 'WebhookEndpoint'>['WebhookEndpoint'],
  companyId: string,
): Promise<EndpointView[]> {
  return model.find({ companyId, ...LIVE_ENDPOINT }, { _id: 1, officeId: 1, enabledEvents: 1, disabled: 1 }).lean();
}

/**
 * A company's endpoints for the audit path, read at most once per `ttlMs` per company and process: the audit worker
 * asks for every catalog event, and most companies' endpoints change rarely. A new or re-enabled endpoint gets events
 * after at most `ttlMs`.
 */
export function cachedEndpoints(
  model: Pick<Models, 'WebhookEndpoint'>['WebhookEndpoint'],
  ttlMs: number,
  now: () => number = Date.now,
): (companyId: string) => Promise<EndpointView[]> {
  const cache = new Map<string, { at: number; endpoints: Promise<EndpointView[]> }>();
  return (companyId) => {
    const hit = cache.get(companyId);
    if (hit && now() - hit.at < ttlMs) return hit.endpoints;
    const endpoints = liveEndpointsOf(model, companyId);
    cache.set(companyId, { at: now(), endpoints });
    endpoints.catch(() => cache.delete(companyId));
    if (cache.size > 10_000) cache.delete(cache.keys().next().value as string);
    return endpoints;
  };
}

/**
 * Retention of events and deliveries (30 days), run from the audit path at most once per `everyMs` per process, in
 * the background: it never delays or fails an append.
 */
export function retentionEvery(
  models: Parameters<typeof pruneExpiredWebhookRecords>[0],
  everyMs: number,
  logger: Logger,
  now: () => number = Date.now,
): () => void {
  let last = 0;
  return () => {
    if (now() - last < everyMs) return;
    last = now();
    pruneExpiredWebhookRecords(models).then(
      (pruned) => {
        if (pruned.events + pruned.deliveries > 0) logger.info(pruned, 'expired webhook events and deliveries deleted');
      },
      (error: unknown) => logger.warn({ err: error }, 'webhook retention failed; it runs again later'),
    );
  };
}

export interface EmitResult {
  eventId?: string;
  deliveries: number;
}

/**
 * Turns an appended audit event into an outgoing webhook event when its action is in the catalog, and queues one
 * delivery per enabled endpoint that wants it. Idempotent: the event is keyed by the audit event's id and each
 * delivery by (event, endpoint), so a retried append (an audit job's, or a charge's) makes the same event and the same
 * deliveries (their job ids come from the delivery ids). Companies without any endpoint pay one cached lookup and
 * store nothing.
 */
export async function emitWebhookEvent(deps: EmitDeps, audit: AuditEvent): Promise<EmitResult> {
  const type = webhookEventTypeOf(audit);
  if (!type) return { deliveries: 0 };
  const endpoints = await deps.endpointsOf(audit.companyId);
  if (endpoints.length === 0) return { deliveries: 0 };
  const event = await storedEvent(deps, audit, type);
  if (!event) return { deliveries: 0 };
  return { eventId: event._id, deliveries: await fanOutEvent(deps, event, endpoints) };
}

/** A stored event, as its fan-out needs it. */
export type FannedOutEvent = Pick<OutgoingEventRecord, '_id' | 'companyId' | 'officeId' | 'type' | 'fanOutPending'>;

/**
 * Stores and queues a delivery of the event for each endpoint that wants it (idempotent: one delivery per event and
 * endpoint), then clears the event's fan-out mark. The emitter's second half, and the outbox sweep's for an event
 * whose emitter stopped between the two (application/outbox/sweep-outbox.ts).
 */
export async function fanOutEvent(
  deps: Pick<EmitDeps, 'enqueueDelivery'> & { models: Pick<Models, 'OutgoingEvent' | 'WebhookDelivery'> },
  event: FannedOutEvent,
  endpoints: readonly EndpointView[],
): Promise<number> {
  const targets = endpoints.filter(
    (endpoint) =>
      !endpoint.disabled &&
      (!endpoint.officeId || endpoint.officeId === event.officeId) &&
      // Stored by the emitter from the catalog's types.
      endpointWants(endpoint.enabledEvents, event.type as WebhookEventType),
  );
  for (const endpoint of targets) {
    const deliveryId = await storedDelivery(deps, event, endpoint._id, event.companyId);
    await deps.enqueueDelivery({ deliveryId });
  }
  if (event.fanOutPending) {
    await deps.models.OutgoingEvent.updateOne({ _id: event._id }, { $unset: { fanOutPending: 1 } });
  }
  return targets.length;
}

async function storedEvent(
  deps: EmitDeps,
  audit: AuditEvent,
  catalogType: NonNullable<ReturnType<typeof webhookEventTypeOf>>,
) {
  const { OutgoingEvent } = deps.models;
  const existing = await OutgoingEvent.findOne({ auditEventId: audit.eventId }).lean();
  if (existing) return existing;
  const read = await readEventData(deps.models, catalogType, audit);
  if (!read) {
    deps.logger.warn({ action: audit.action, resourceType: audit.resource.type }, 'webhook event resource not found');
    return undefined;
  }
  const payload: WebhookPayload = { type: read.type, timestamp: audit.occurredAt, data: read.data };
  const officeId = audit.officeId ?? ('officeId' in read.data ? read.data.officeId : undefined);
  const record = {
    _id: `msg_${ulid()}`,
    auditEventId: audit.eventId,
    companyId: audit.companyId,
    ...(officeId ? { officeId } : {}),
    type: read.type,
    occurredAt: new Date(audit.occurredAt),
    body: JSON.stringify(payload),
    createdAt: new Date(),
    fanOutPending: true as const,
  };
  try {
    await OutgoingEvent.create(record);
    return record;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    // Another worker stored it first: that one is the event.
    const winner = await OutgoingEvent.findOne({ auditEventId: audit.eventId }).lean();
    if (!winner) throw error;
    return winner;
  }
}

async function storedDelivery(
  deps: { models: Pick<Models, 'WebhookDelivery'> },
  event: { _id: string; type: string },
  endpointId: string,
  companyId: string,
): Promise<string> {
  const { WebhookDelivery } = deps.models;
  const existing = await WebhookDelivery.findOne({ eventId: event._id, endpointId }, { _id: 1 }).lean();
  if (existing) return existing._id;
  const _id = `dlv_${ulid()}`;
  try {
    await WebhookDelivery.create({
      _id,
      companyId,
      endpointId,
      eventId: event._id,
      eventType: event.type,
      status: 'pending',
      attempts: [],
      redeliveries: 0,
    });
    return _id;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const winner = await WebhookDelivery.findOne({ eventId: event._id, endpointId }, { _id: 1 }).lean();
    if (!winner) throw error;
    return winner._id;
  }
}
