import { Schema, type Connection, type Model } from 'mongoose';
import type { AuditEventInput } from '../domain/audit-event';

/**
 * Outgoing webhooks (docs/outgoing-webhooks.md): the endpoints upstream apps registered, the events derived from the
 * audit trail, and each event's delivery to each endpoint with its attempts.
 */

/** A signing secret: ciphertext (random) under the company's data key in the database, a string once read back. */
export interface StoredWebhookSecret {
  secret: unknown;
  createdAt: Date;
  /** Set on the previous secret by a rotation: it still signs until then. */
  expiresAt?: Date;
}

export interface WebhookEndpointRecord {
  /** `we_` and a ULID. */
  _id: string;
  companyId: string;
  /** Only this office's events; absent: the whole company's. */
  officeId?: string;
  url: string;
  enabledEvents: string[];
  description?: string;
  disabled: boolean;
  /** Why it is disabled: `disabled_by_user`, or `failing` (all deliveries failed for days). */
  disabledReason?: string;
  /** Newest first; at most two (the current one and, during a rotation's grace period, the previous one). */
  secrets: StoredWebhookSecret[];
  /** Since when every delivery failed (unset by the next success): 3 days of it disable the endpoint. */
  failingSince?: Date;
  /**
   * Audit events of a change to it, stored in the same write as the change until they are queued
   * (models/pending-audit.ts); the outbox sweep queues what stays pending.
   */
  pendingAudit?: Record<string, AuditEventInput[]>;
  /**
   * Deleted: gone for every reader, kept only until the deletion's audit event is queued (the api, or the outbox
   * sweep when Redis did not take it, then removes it).
   */
  deletedAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

/** The filter every reader of endpoints adds: a deleted endpoint waiting for its audit event does not exist. */
export const LIVE_ENDPOINT = { deletedAt: { $exists: false } } as const;

const endpointSchema = new Schema<WebhookEndpointRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    url: { type: String, required: true },
    enabledEvents: { type: [String], required: true },
    description: { type: String },
    disabled: { type: Boolean, required: true, default: false },
    disabledReason: { type: String },
    // Mixed: mongoose must pass the driver's encrypted Binary values through untouched.
    secrets: { type: Schema.Types.Mixed, required: true },
    failingSince: { type: Date },
    pendingAudit: { type: Schema.Types.Mixed },
    deletedAt: { type: Date },
  },
  { timestamps: true, versionKey: false, collection: 'webhook_endpoints' },
);
endpointSchema.index({ companyId: 1, _id: -1 });

/** An event as delivered (Standard Webhooks: `webhook-id` is `_id`; the body is stored as it is signed). */
export interface OutgoingEventRecord {
  /** `msg_` and a ULID: time-ordered, so the events API pages by it. */
  _id: string;
  /** The audit event it was derived from: a retry of the audit job finds this event instead of making another. */
  auditEventId: string;
  companyId: string;
  officeId?: string;
  type: string;
  /** When the change happened. */
  occurredAt: Date;
  /** `{ type, timestamp, data }` as JSON, exactly the bytes every delivery signs and sends. */
  body: string;
  createdAt: Date;
  /**
   * Set when the event is stored, removed once a delivery is stored and queued for every endpoint that wants it. An
   * event still marked after the outbox sweep's staleness lost its fan-out (its process stopped between the writes,
   * and nothing sent its audit event again): the sweep fans it out.
   */
  fanOutPending?: true;
}

export const EVENT_RETENTION_SECONDS = 30 * 24 * 60 * 60;

const outgoingEventSchema = new Schema<OutgoingEventRecord>(
  {
    _id: { type: String, required: true },
    auditEventId: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    type: { type: String, required: true },
    occurredAt: { type: Date, required: true },
    body: { type: String, required: true },
    createdAt: { type: Date, required: true },
    fanOutPending: { type: Boolean },
  },
  { versionKey: false, collection: 'events' },
);
outgoingEventSchema.index({ auditEventId: 1 }, { unique: true });
outgoingEventSchema.index({ companyId: 1, _id: 1 });
outgoingEventSchema.index({ companyId: 1, type: 1, _id: 1 });
// Retention (30 days: receivers catch up by pulling within them) is a delete by this index
// (pruneExpiredWebhookRecords), not a TTL index: the MongoDB-wire server used in development has no TTL indexes.
outgoingEventSchema.index({ createdAt: 1 });
// The outbox sweep's read of events whose fan-out was lost.
outgoingEventSchema.index({ fanOutPending: 1, createdAt: 1 });

export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed', 'endpoint_disabled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export interface DeliveryAttempt {
  at: Date;
  /** The receiver's HTTP status, when it answered. */
  statusCode?: number;
  latencyMs: number;
  /** Why it failed without an answer (`timeout`, `address_refused`, `connection_failed`, …) or with a non-2xx one. */
  errorCode?: string;
  /** The first 256 bytes of the answer. */
  responseExcerpt?: string;
  /** When the next attempt is due, if there is one. */
  nextRetryAt?: Date;
}

export interface WebhookDeliveryRecord {
  /** `dlv_` and a ULID. */
  _id: string;
  companyId: string;
  endpointId: string;
  eventId: string;
  eventType: string;
  status: DeliveryStatus;
  attempts: DeliveryAttempt[];
  /** How many redeliveries were asked for (each is a new job for the same event id). */
  redeliveries: number;
  /**
   * While pending, when its next attempt is due: its creation, a redelivery's request, or a failed attempt's
   * `nextRetryAt`. The outbox sweep gives a job to a pending delivery overdue by more than its staleness and without one.
   */
  nextAttemptAt?: Date;
  deliveredAt?: Date;
  /** A redelivery's audit event until it is queued (models/pending-audit.ts; the outbox sweep sends what is left). */
  pendingAudit?: Record<string, AuditEventInput[]>;
  createdAt: Date;
  updatedAt: Date;
}

/** Attempts kept on a delivery (the latest ones). */
export const KEPT_ATTEMPTS = 30;

const deliverySchema = new Schema<WebhookDeliveryRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    endpointId: { type: String, required: true },
    eventId: { type: String, required: true },
    eventType: { type: String, required: true },
    status: { type: String, enum: DELIVERY_STATUSES, required: true },
    attempts: { type: Schema.Types.Mixed, required: true, default: [] },
    redeliveries: { type: Number, required: true, default: 0 },
    nextAttemptAt: { type: Date, default: () => new Date() },
    deliveredAt: { type: Date },
    pendingAudit: { type: Schema.Types.Mixed },
  },
  { timestamps: true, versionKey: false, collection: 'webhook_deliveries' },
);
// One delivery per event and endpoint: a retried audit job finds it instead of making a second.
deliverySchema.index({ eventId: 1, endpointId: 1 }, { unique: true });
deliverySchema.index({ endpointId: 1, _id: -1 });
deliverySchema.index({ createdAt: 1 });
// The outbox sweep's overdue pending deliveries.
deliverySchema.index({ status: 1, nextAttemptAt: 1 });

export type WebhookEndpointModel = Model<WebhookEndpointRecord>;
export type OutgoingEventModel = Model<OutgoingEventRecord>;
export type WebhookDeliveryModel = Model<WebhookDeliveryRecord>;

export function createWebhookEndpointModel(connection: Connection): WebhookEndpointModel {
  return connection.model<WebhookEndpointRecord>('WebhookEndpoint', endpointSchema);
}
export function createOutgoingEventModel(connection: Connection): OutgoingEventModel {
  return connection.model<OutgoingEventRecord>('OutgoingEvent', outgoingEventSchema);
}
export function createWebhookDeliveryModel(connection: Connection): WebhookDeliveryModel {
  return connection.model<WebhookDeliveryRecord>('WebhookDelivery', deliverySchema);
}

/** Deletes events and deliveries older than the retention period; returns how many of each went. */
export async function pruneExpiredWebhookRecords(
  models: { OutgoingEvent: OutgoingEventModel; WebhookDelivery: WebhookDeliveryModel },
  now = new Date(),
): Promise<{ events: number; deliveries: number }> {
  const cutoff = new Date(now.getTime() - EVENT_RETENTION_SECONDS * 1000);
  const [events, deliveries] = await Promise.all([
    models.OutgoingEvent.deleteMany({ createdAt: { $lt: cutoff } }),
    models.WebhookDelivery.deleteMany({ createdAt: { $lt: cutoff } }),
  ]);
  return { events: events.deletedCount, deliveries: deliveries.deletedCount };
}
