import type { Collection } from 'mongodb';
import { Webhook } from 'standardwebhooks';
import { transitionEventId } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import { RESPONSE_EXCERPT_BYTES, retryDelayMs } from '../../domain/webhook-endpoint';
import type { SendResult } from '../../gateway/webhook-sender';
import type { Models } from '../../models';
import { stamped } from '../../models/connection';
import {
  KEPT_ATTEMPTS,
  type OutgoingEventRecord,
  type WebhookDeliveryRecord,
  type WebhookEndpointRecord,
} from '../../models/outgoing-webhook.model';
import { webhookDeliveries } from '../../platform/metrics';

export interface DeliverDeps {
  /** The endpoint's rare writes (a failing streak begun, ended, or the endpoint disabled for it). */
  models: Pick<Models, 'WebhookEndpoint'>;
  /** The endpoints on the decrypting client (`driverCollection`): a driver read, its signing secrets decrypted. */
  endpoints: Collection<WebhookEndpointRecord>;
  /**
   * The deliveries and events on the client without decryption (models/connection.ts `plainCollection`): neither holds
   * an encrypted field, so their reads skip the decryption pass and mongoose's query machinery; the delivery's writes
   * stamp `updatedAt` themselves (`stamped`).
   */
  deliveries: Collection<WebhookDeliveryRecord>;
  events: Collection<OutgoingEventRecord>;
  sender: { send(url: string, headers: Record<string, string>, body: string): Promise<SendResult> };
  enqueueAudit(event: AuditEventInput): Promise<void>;
  retryScheduleMs: readonly number[];
  disableAfterMs: number;
  now?: () => Date;
}

export type DeliverOutcome = 'delivered' | 'already_delivered' | 'endpoint_disabled' | 'gone';

/** A failed attempt that will be retried (BullMQ's custom backoff spaces the retries). */
export class DeliveryFailedError extends Error {
  override readonly name = 'DeliveryFailedError';
  constructor(readonly code: string) {
    super(code);
  }
}

/** The secrets that sign now: the current one and, within a rotation's grace period, the previous one. */
export function signingSecrets(endpoint: Pick<WebhookEndpointRecord, 'secrets'>, now: Date): string[] {
  return endpoint.secrets
    .filter((entry) => !entry.expiresAt || new Date(entry.expiresAt) > now)
    .map((entry) => entry.secret)
    .filter((secret): secret is string => typeof secret === 'string' && secret.startsWith('whsec_'));
}

/** Standard Webhooks headers: one `v1,` signature per valid secret, space-separated (the library signs). */
export function signedHeaders(eventId: string, body: string, secrets: string[], at: Date): Record<string, string> {
  return {
    'webhook-id': eventId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': secrets.map((secret) => new Webhook(secret).sign(eventId, at, body)).join(' '),
    'user-agent': 'hipaa-billing-webhooks/1',
  };
}

/**
 * One attempt to deliver an event to an endpoint: signs the stored body, POSTs it, stores the attempt. A 2xx
 * delivers it (and clears the endpoint's failing streak); anything else is recorded and thrown to be retried, until
 * the schedule runs out. An endpoint failing for `disableAfterMs` is disabled and that is audited; a disabled or
 * deleted endpoint gets nothing more.
 */
export async function deliverWebhook(
  deps: DeliverDeps,
  job: { deliveryId: string; attempt: number; finalAttempt: boolean; redelivery?: boolean },
): Promise<DeliverOutcome> {
  const { WebhookEndpoint } = deps.models;
  const { deliveries, endpoints, events } = deps;
  const now = deps.now?.() ?? new Date();
  const delivery = await deliveries.findOne({ _id: job.deliveryId });
  if (!delivery) return 'gone';
  // A job run again after its success was recorded (its worker killed before BullMQ marked it done, a Redis restart
  // that lost that mark): the receiver has it already. Only a redelivery the company asked for sends it again.
  if (delivery.status === 'delivered' && !job.redelivery) return 'already_delivered';
  const [endpoint, event] = await Promise.all([
    endpoints.findOne({ _id: delivery.endpointId }),
    events.findOne({ _id: delivery.eventId }),
  ]);
  if (!endpoint || endpoint.deletedAt || !event) {
    await deliveries.updateOne(
      { _id: delivery._id, status: 'pending' },
      stamped({ $set: { status: 'failed' as const } }),
    );
    return 'gone';
  }
  if (endpoint.disabled) {
    // Disabled for failing: its audit event again (same id, stored once), in case the disabling write's own send was
    // cut short by a crash.
    if (endpoint.disabledReason === 'failing' && endpoint.failingSince) {
      await auditDisabled(deps, endpoint, new Date(endpoint.failingSince), now);
    }
    await deliveries.updateOne(
      { _id: delivery._id, status: { $ne: 'delivered' } },
      stamped({ $set: { status: 'endpoint_disabled' as const } }),
    );
    webhookDeliveries.inc({ outcome: 'endpoint_disabled' });
    return 'endpoint_disabled';
  }
  const headers = signedHeaders(event._id, event.body, signingSecrets(endpoint, now), now);
  const result = await deps.sender.send(endpoint.url, headers, event.body);
  const ok = result.statusCode !== undefined && result.statusCode >= 200 && result.statusCode < 300;
  const nextRetryAt =
    ok || job.finalAttempt ? undefined : new Date(now.getTime() + retryDelayMs(deps.retryScheduleMs, job.attempt));
  const attempt = {
    at: now,
    ...(result.statusCode !== undefined ? { statusCode: result.statusCode } : {}),
    latencyMs: result.latencyMs,
    ...(ok ? {} : { errorCode: result.errorCode ?? `http_${result.statusCode}` }),
    ...(result.responseExcerpt ? { responseExcerpt: result.responseExcerpt.slice(0, RESPONSE_EXCERPT_BYTES) } : {}),
    ...(nextRetryAt ? { nextRetryAt } : {}),
  };
  // One job at a time per delivery writes its attempts; a redelivery of a delivered event stays `delivered`.
  await deliveries.updateOne(
    { _id: delivery._id },
    stamped({
      $push: { attempts: { $each: [attempt], $slice: -KEPT_ATTEMPTS } },
      $set: ok
        ? { status: 'delivered' as const, deliveredAt: now }
        : delivery.status === 'delivered'
          ? {}
          : job.finalAttempt
            ? { status: 'failed' as const }
            : { status: 'pending' as const, nextAttemptAt: nextRetryAt },
    }),
  );
  if (ok) {
    webhookDeliveries.inc({ outcome: 'delivered' });
    // A failing streak ends with a success. The endpoint as read says whether there is one: a failure that starts a
    // streak while this attempt is in flight keeps it (the next success ends it), as it would had its write come last.
    if (endpoint.failingSince) {
      await WebhookEndpoint.updateOne(
        { _id: endpoint._id, failingSince: { $exists: true } },
        { $unset: { failingSince: 1 } },
      );
    }
    return 'delivered';
  }
  webhookDeliveries.inc({ outcome: result.errorCode === 'address_refused' ? 'refused' : 'failed' });
  await noteFailure(deps, endpoint, now);
  throw new DeliveryFailedError(attempt.errorCode ?? 'delivery_failed');
}

async function noteFailure(deps: DeliverDeps, endpoint: WebhookEndpointRecord, now: Date): Promise<void> {
  const { WebhookEndpoint } = deps.models;
  if (!endpoint.failingSince) {
    await WebhookEndpoint.updateOne(
      { _id: endpoint._id, failingSince: { $exists: false } },
      { $set: { failingSince: now } },
    );
    return;
  }
  const since = new Date(endpoint.failingSince);
  if (now.getTime() - since.getTime() < deps.disableAfterMs) return;
  const disabled = await WebhookEndpoint.updateOne(
    { _id: endpoint._id, disabled: false, failingSince: since },
    { $set: { disabled: true, disabledReason: 'failing' } },
  );
  // Whoever disabled it audits it; the id is fixed by the streak, so a retry after a crash records it once.
  if (disabled.matchedCount === 0) return;
  await auditDisabled(deps, endpoint, since, now);
}

async function auditDisabled(
  deps: Pick<DeliverDeps, 'enqueueAudit'>,
  endpoint: Pick<WebhookEndpointRecord, '_id' | 'companyId' | 'officeId'>,
  since: Date,
  now: Date,
): Promise<void> {
  await deps.enqueueAudit({
    eventId: transitionEventId('webhook_endpoint.disabled', `${endpoint._id}-${since.getTime()}`),
    companyId: endpoint.companyId,
    ...(endpoint.officeId ? { officeId: endpoint.officeId } : {}),
    action: 'webhook_endpoint.disabled',
    outcome: 'success',
    severity: 'high',
    actor: { type: 'system', id: 'webhook-deliveries-worker' },
    resource: { type: 'webhook_endpoint', id: endpoint._id },
    reason: 'deliveries_failing',
    changes: [{ field: 'disabled', before: 'false', after: 'true' }],
    occurredAt: now.toISOString(),
  });
}
