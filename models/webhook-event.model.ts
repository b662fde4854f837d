import { createHash } from 'node:crypto';
import { Schema, type Connection, type Model } from 'mongoose';
import type { AuditEventInput } from '../domain/audit-event';

export const WEBHOOK_EVENT_STATUSES = ['received', 'applied', 'ignored', 'failed'] as const;
export type WebhookEventStatus = (typeof WEBHOOK_EVENT_STATUSES)[number];

/** Finished events are not enqueued again when Stripe redelivers them. */
export function isFinishedWebhookEvent(status: WebhookEventStatus): boolean {
  return status !== 'received';
}

/**
 * Inbox keys are per company (issue 20): two companies on one Stripe account receive the same event id, and each
 * must get, process and audit its own copy. The first company to store an event keeps Stripe's event id as the key
 * (so every row stored before keeps working, with no migration); another company's copy is keyed by this: the event
 * id and a hash of the company id, still a valid Stripe-event-shaped id for job payloads and job ids.
 */
export function companyInboxKey(companyId: string, stripeEventId: string): string {
  return `${stripeEventId}C${createHash('sha256').update(companyId).digest('hex').slice(0, 24)}`;
}

/** The keys a company's copy of a Stripe event may be stored under: look it up with `companyId` as well. */
export function inboxKeys(companyId: string, stripeEventId: string): string[] {
  return [stripeEventId, companyInboxKey(companyId, stripeEventId)];
}

/**
 * The inbox: one verified Stripe event, stored before it is acknowledged, so a
 * lost job can be redone from here. `_id` is its inbox key (`inboxKeys`), which makes a
 * redelivery a duplicate key; `stripeEventId` is Stripe's id when it differs. The payload may reference customers, so it is
 * stored encrypted (random) under the company's data key; it reads back decrypted.
 */
export interface WebhookEventRecord {
  _id: string;
  /** Stripe's event id, set when `_id` is a company inbox key (`companyInboxKey`). */
  stripeEventId?: string;
  companyId: string;
  officeId?: string;
  type: string;
  livemode: boolean;
  /** How many times ops replayed it (each replay is processed and audited once). */
  replays: number;
  /** When Stripe created the event. */
  created: Date;
  receivedAt: Date;
  status: WebhookEventStatus;
  /** Why it was applied, ignored or failed (a reason code), and the record it concerned. */
  outcome?: { reason: string; paymentId?: string; resource?: { type: string; id: string } };
  /** A transition this event is about to apply (written first, so a crash in between is recognised on retry). */
  pending?: { paymentId: string; from: string; to: string };
  /**
   * The `webhook.replayed` event of the replay that reset this row, written with the reset: the worker that
   * processes the replay sends it (same id as the replay's own enqueue), so a replay cut short after the reset is
   * still recorded. Removed when the row is finished.
   */
  replayAudit?: AuditEventInput;
  /** The event JSON as Stripe sent it: ciphertext in the database, a string once read back. */
  payload: unknown;
  processedAt?: Date;
}

const webhookEventSchema = new Schema<WebhookEventRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    stripeEventId: { type: String },
    type: { type: String, required: true },
    livemode: { type: Boolean, required: true },
    created: { type: Date, required: true },
    receivedAt: { type: Date, required: true },
    status: { type: String, required: true, enum: WEBHOOK_EVENT_STATUSES },
    replays: { type: Number, required: true, default: 0 },
    outcome: {
      type: new Schema(
        {
          reason: { type: String, required: true },
          paymentId: String,
          resource: {
            type: new Schema(
              { type: { type: String, required: true }, id: { type: String, required: true } },
              { _id: false },
            ),
          },
        },
        { _id: false },
      ),
    },
    pending: {
      type: new Schema(
        {
          paymentId: { type: String, required: true },
          from: { type: String, required: true },
          to: { type: String, required: true },
        },
        { _id: false },
      ),
    },
    replayAudit: { type: Schema.Types.Mixed },
    payload: { type: Schema.Types.Mixed, required: true },
    processedAt: { type: Date },
  },
  { versionKey: false, collection: 'webhook_events' },
);
// For a sweep of events stored but never enqueued, and for ops.
webhookEventSchema.index({ status: 1, receivedAt: 1 }, { name: 'status_received' });

export type WebhookEventModel = Model<WebhookEventRecord>;

export function createWebhookEventModel(connection: Connection): WebhookEventModel {
  return connection.model<WebhookEventRecord>('WebhookEvent', webhookEventSchema);
}

/**
 * One document per replay of an event, `<event id>-replay-<n>`: inserting it under its unique id is how a replay
 * claims its number. Two replays racing on one row cannot both reset it, even on a server that loses one of two
 * concurrent updates of one document (FerretDB), where the row's conditional update alone would let both through.
 */
export interface WebhookReplayClaim {
  _id: string;
  eventId: string;
  claimedAt: Date;
}

const webhookReplayClaimSchema = new Schema<WebhookReplayClaim>(
  {
    _id: { type: String, required: true },
    eventId: { type: String, required: true },
    claimedAt: { type: Date, required: true },
  },
  { versionKey: false, collection: 'webhook_event_replays' },
);

export type WebhookReplayClaimModel = Model<WebhookReplayClaim>;

export function createWebhookReplayClaimModel(connection: Connection): WebhookReplayClaimModel {
  return connection.model<WebhookReplayClaim>('WebhookReplayClaim', webhookReplayClaimSchema);
}
