import type { Collection } from 'mongodb';
import Stripe from 'stripe';
import { z } from 'zod';
import { PLATFORM_AUDIT_SCOPE, transitionEventId } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import { resolvePaymentConfig } from '../../domain/payment-config';
import type { Models } from '../../models';
import { isShreddedDataError, type FieldEncryption } from '../../models/encryption';
import { isDuplicateKeyError } from '../../models/errors';
import { loadPaymentLevels, ShreddedPaymentInfoError, type PaymentTarget } from '../../models/payment-config';
import type { SettingsReads } from '../../models/settings-cache';
import {
  companyInboxKey,
  inboxKeys,
  isFinishedWebhookEvent,
  type WebhookEventRecord,
} from '../../models/webhook-event.model';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import { STRIPE_EVENT_ID } from '../../domain/stripe-ids';
import type { StripeEventJob } from '../../queues/stripe-events.queue';

/** Stripe's own default: a signed delivery older than this is refused as a possible replay. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

export type WebhookRejection =
  | 'config_unknown'
  | 'webhook_secret_missing'
  | 'company_shredded'
  | 'signature_missing'
  | 'signature_malformed'
  | 'signature_invalid'
  | 'timestamp_outside_tolerance'
  | 'payload_invalid';

/** Only what the ingress needs to store the event; the worker reads the rest from the stored payload. */
const eventEnvelopeSchema = z.object({
  id: z.string().regex(STRIPE_EVENT_ID),
  type: z.string().regex(/^[a-z0-9_.]{1,100}$/),
  livemode: z.boolean(),
  created: z.number().int().positive(),
});
export type EventEnvelope = z.infer<typeof eventEnvelopeSchema>;

/**
 * Verifies a delivery on its raw bytes against each signing secret in turn (two
 * during a rotation). The most telling failure wins: a matching signature with a
 * stale timestamp says more than a mismatch under the other secret.
 */
export function verifyStripeEvent(
  raw: Buffer,
  header: string | undefined,
  secrets: readonly string[],
): { ok: true; event: EventEnvelope } | { ok: false; reason: WebhookRejection } {
  if (!header) return { ok: false, reason: 'signature_missing' };
  if (raw.length === 0) return { ok: false, reason: 'payload_invalid' };
  let reason: WebhookRejection = 'signature_invalid';
  for (const secret of secrets) {
    let parsed: unknown;
    try {
      parsed = Stripe.webhooks.constructEvent(raw, header, secret, SIGNATURE_TOLERANCE_SECONDS);
    } catch (error) {
      if (error instanceof SyntaxError) return { ok: false, reason: 'payload_invalid' };
      if (!(error instanceof Stripe.errors.StripeSignatureVerificationError)) throw error;
      if (/tolerance/i.test(error.message)) reason = 'timestamp_outside_tolerance';
      else if (/Unable to extract|expected scheme/i.test(error.message))
        return { ok: false, reason: 'signature_malformed' };
      continue;
    }
    const envelope = eventEnvelopeSchema.safeParse(parsed);
    return envelope.success ? { ok: true, event: envelope.data } : { ok: false, reason: 'payload_invalid' };
  }
  return { ok: false, reason };
}

/** The log lines written here: pino's logger and Fastify's request logger both fit. */
export interface ReceiveEventLog {
  child(bindings: Record<string, unknown>): ReceiveEventLog;
  info(details: object, message: string): void;
  warn(message: string): void;
  error(details: object, message: string): void;
}

export interface ReceiveEventDeps {
  models: Pick<Models, 'Company' | 'Office' | 'WebhookEvent'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  /**
   * The api's settings cache, keeping signing secrets (models/settings-cache.ts): the configuration as Redis' tokens
   * say it is now, an `MGET` instead of a read and a decryption per delivery. Not run in a job scope (`inJob`): an
   * AsyncLocalStorage would put a hook on every promise of the api process, where a scope saves one `MGET` only for
   * an office's delivery.
   */
  settings: Pick<SettingsReads, 'company' | 'office'>;
  /**
   * The inbox's collection on the client without decryption (models/connection.ts `plainCollection`): the row is
   * inserted with its payload already encrypted, and the reply needs no decryption pass.
   */
  inbox: Collection<WebhookEventRecord>;
  /** Queues the stored event's job (job id from the event id and its replay number). */
  enqueueEvent: (job: StripeEventJob, replays: number) => Promise<void>;
  /** Queues an audit event (the api seals the request's context into it). */
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  logger: ReceiveEventLog;
}

/** One delivery to the endpoint of a payment configuration (a company's, or one of its offices'). */
export interface WebhookDelivery {
  target: PaymentTarget;
  /** The exact bytes Stripe sent: the signature covers them. */
  raw: Buffer;
  signature: string | undefined;
}

/**
 * - `received`: the event is stored in the inbox (or was already), queued unless it is finished or another
 *   company's, and its `webhook.received` audited.
 * - `rejected`: nothing was stored; `trail` is the audit trail the rejection belongs to (the company's, or the
 *   platform's when the company is unknown or shredded, so neither gets a trail or a data key from it).
 */
export type ReceiveEventResult =
  { outcome: 'received'; event: EventEnvelope } | { outcome: 'rejected'; reason: WebhookRejection; trail: string };

/** The event is stored but its job or audit event could not be queued (Redis down): Stripe should retry. */
export class WebhookNotQueuedError extends Error {
  constructor(
    readonly eventId: string,
    options: { cause: unknown },
  ) {
    super(`stripe event ${eventId} is stored but could not be queued`, options);
    this.name = 'WebhookNotQueuedError';
  }
}

/**
 * Receives a Stripe delivery: the signing secrets come from the target's
 * effective payment configuration; the event, once verified, is stored
 * (encrypted) in the inbox, its id queued for the stripe-events worker and its
 * receipt audited. A redelivery stores nothing new: an unfinished event is
 * queued again under the same job id, a finished one is only acknowledged.
 */
export async function receiveWebhookEvent(
  deps: ReceiveEventDeps,
  delivery: WebhookDelivery,
): Promise<ReceiveEventResult> {
  const { models, encryption } = deps;
  const { target, raw } = delivery;
  const { companyId, officeId } = target;
  const rejected = (reason: WebhookRejection, trail: string): ReceiveEventResult => ({
    outcome: 'rejected',
    reason,
    trail,
  });

  const levels = await loadPaymentLevels(models, target, { reads: deps.settings }).catch((error: unknown) => {
    // A company's configuration or an office's that its data key no longer decrypts.
    if (error instanceof ShreddedPaymentInfoError || isShreddedDataError(error)) return undefined;
    throw error;
  });
  // Unreadable (data key gone): only then is the company asked for on its own, to tell missing from shredded.
  const companyExists = levels ? levels.companyExists : Boolean(await models.Company.exists({ _id: companyId }));
  // A company that does not exist gets no trail (and no data key) of its own; neither does a shredded one.
  if (!companyExists) return rejected('config_unknown', PLATFORM_AUDIT_SCOPE);
  if (!levels || levels.companyShredded) return rejected('company_shredded', PLATFORM_AUDIT_SCOPE);

  const resolved = resolvePaymentConfig(levels.company, levels.office);
  if (!resolved.ok) return rejected('config_unknown', companyId);
  const secrets = resolved.settings.webhookSigningSecrets ?? [];
  if (secrets.length === 0) return rejected('webhook_secret_missing', companyId);

  const verified = verifyStripeEvent(raw, delivery.signature, secrets);
  if (!verified.ok) return rejected(verified.reason, companyId);
  const { event } = verified;
  // Made only when a line is written (a redelivery, a failure): most deliveries write none.
  const log = () => deps.logger.child({ stripeEventId: event.id, stripeEventType: event.type, companyId });

  let enqueue = true;
  // A redelivery while a replay is pending must name the replay's job, not start a second one.
  let replays = 0;
  const row = {
    companyId,
    ...(officeId ? { officeId } : {}),
    type: event.type,
    livemode: event.livemode,
    created: new Date(event.created * 1000),
    receivedAt: new Date(),
    status: 'received' as const,
    payload: await encryption.encrypt(companyId, raw.toString('utf8')),
  };
  // The inbox key: Stripe's event id, or, when another company (same Stripe account) stored that first, this
  // company's own key. The insert under a unique key is what makes a redelivery a no-op.
  let key = event.id;
  let stored = await insertOrFind(models, deps.inbox, key, row, companyId, event.id);
  if (stored === 'taken') {
    key = companyInboxKey(companyId, event.id);
    stored = await insertOrFind(models, deps.inbox, key, { ...row, stripeEventId: event.id }, companyId, event.id);
    if (stored === 'taken') throw new Error(`inbox key ${key} holds another company's event`);
  }
  if (stored !== 'inserted') {
    // A finished event is only acknowledged; an unfinished one is enqueued again (same job id: no double work).
    key = stored._id;
    enqueue = !isFinishedWebhookEvent(stored.status);
    replays = stored.replays;
    log().info({ status: stored.status }, 'stripe event redelivered');
  }

  try {
    await withDeadline(
      Promise.all([
        enqueue ? deps.enqueueEvent({ eventId: key }, replays) : undefined,
        // One receipt per event and company, whichever delivery records it.
        deps.enqueueAudit({
          eventId: transitionEventId('webhook.received', key),
          companyId,
          ...(officeId ? { officeId } : {}),
          action: 'webhook.received',
          outcome: 'success',
          actor: { type: 'service', id: 'stripe' },
          resource: { type: 'webhook_event', id: key },
          occurredAt: new Date().toISOString(),
        }),
      ]),
      ENQUEUE_DEADLINE_MS,
      'enqueue',
    );
  } catch (error) {
    log().error({ err: error }, 'stripe event stored but not queued');
    throw new WebhookNotQueuedError(event.id, { cause: error });
  }
  return { outcome: 'received', event };
}

type StoredRow = { _id: string; status: Parameters<typeof isFinishedWebhookEvent>[0]; replays: number };

/**
 * Inserts the row under `key`; on a duplicate, the row this company already stored for the event (under either of
 * its keys), or 'taken' when the key holds another company's copy.
 */
async function insertOrFind(
  models: Pick<Models, 'WebhookEvent'>,
  inbox: Collection<WebhookEventRecord>,
  key: string,
  row: Omit<WebhookEventRecord, '_id' | 'replays'>,
  companyId: string,
  stripeEventId: string,
): Promise<'inserted' | 'taken' | StoredRow> {
  try {
    // Every field is validated or built here (the envelope by its schema): the driver's insert, no mongoose document.
    await inbox.insertOne({ _id: key, ...row, replays: 0 });
    return 'inserted';
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const ours = await models.WebhookEvent.findOne(
      { _id: { $in: inboxKeys(companyId, stripeEventId) }, companyId },
      { status: 1, replays: 1 },
    ).lean();
    return ours ?? 'taken';
  }
}
