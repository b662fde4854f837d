import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RedisClient } from '../../platform/redis';
import { ulid } from '../../platform/ids';
import {
  receiveWebhookEvent,
  SIGNATURE_TOLERANCE_SECONDS,
  WebhookNotQueuedError,
  type WebhookRejection,
} from '../../application/webhooks/receive-event';
import { PLATFORM_AUDIT_SCOPE } from '../../domain/audit-actions';
import { type AuditEventInput } from '../../domain/audit-event';
import type { Database } from '../../models';
import { plainCollection } from '../../models/connection';
import type { PaymentTarget } from '../../models/payment-config';
import type { SettingsReads } from '../../models/settings-cache';
import type { WebhookEventRecord } from '../../models/webhook-event.model';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import type { Queues } from '../../queues';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { enqueueStripeEvent } from '../../queues/stripe-events.queue';
import { routeOf } from '../access-guard';
import { sealRequestContext } from '../audit-context';
import { ApiError } from '../errors';
import { refuseSpentSource, type AuthFailureBudget } from '../auth-failure-budget';
import { AUDITED_PER_SOURCE_PER_MINUTE, createAuditBudget } from '../audit-budget';

export interface StripeWebhookRouteDeps {
  db: Pick<Database, 'models' | 'encryption' | 'plainClient' | 'connection'>;
  /** The api's settings cache, keeping signing secrets: each delivery's configuration (app.ts). */
  settings: Pick<SettingsReads, 'company' | 'office'>;
  queues: Pick<Queues, 'stripe-events' | 'audit'>;
  /** Counts rejected deliveries, so a flood of forged ones cannot flood the audit trail. */
  redis: RedisClient;
  keyPrefix: string;
  /** Deliveries whose signature does not verify spend their source's failed-authentication budget. */
  authFailures: AuthFailureBudget;
}

/**
 * Rejections that mean the sender could not prove it is Stripe (as opposed to our configuration being incomplete or
 * an endpoint that does not exist): they spend the source's failed-authentication budget, and once it is spent they
 * are answered 429. A delivery that verifies is never held back by it, whoever shares its address.
 */
const FORGERY_REASONS: ReadonlySet<WebhookRejection> = new Set([
  'signature_missing',
  'signature_malformed',
  'signature_invalid',
  'timestamp_outside_tolerance',
]);

export const STRIPE_WEBHOOK_ROUTE = '/v1/webhooks/stripe/:configId';
// Payment events are a few KB; some Stripe objects (invoices with many lines) are far larger.
const WEBHOOK_BODY_LIMIT = 512 * 1024;
/**
 * Rejected deliveries audited per source address, trail and reason each minute (and per trail and reason, whatever
 * the source; see audit-budget.ts); beyond that they are only logged. Stripe itself is never rejected, so this only
 * ever bounds what a forger (or a misconfigured secret) can write into the trail.
 */
export const REJECTIONS_AUDITED_PER_MINUTE = AUDITED_PER_SOURCE_PER_MINUTE;
const CONFIG_ID = /^([A-Za-z0-9_-]{1,64})(?:\.([A-Za-z0-9_-]{1,64}))?$/;

const REJECTION_MESSAGES: Record<WebhookRejection, string> = {
  config_unknown: 'no payment configuration with webhook signing secrets answers to this endpoint',
  webhook_secret_missing: 'this payment configuration has no webhook signing secret',
  company_shredded: "the company's data was crypto-shredded",
  signature_missing: 'a Stripe-Signature header is required',
  signature_malformed: 'the Stripe-Signature header cannot be read',
  signature_invalid: 'the signature does not match the payload for any signing secret of this configuration',
  timestamp_outside_tolerance: `the signature timestamp is more than ${SIGNATURE_TOLERANCE_SECONDS} s old`,
  payload_invalid: 'the payload is not a Stripe event',
};

export function parseConfigId(configId: unknown): PaymentTarget | undefined {
  const match = typeof configId === 'string' ? CONFIG_ID.exec(configId) : null;
  if (!match) return undefined;
  return { companyId: match[1]!, ...(match[2] ? { officeId: match[2] } : {}) };
}

/**
 * Stripe webhooks: the raw bytes and signature go to `receiveWebhookEvent`
 * (verify, store the event encrypted in the inbox, enqueue its id, audit its
 * receipt); this route answers 200, a 503 when the event could not be queued,
 * or a 400 whose audit events are bounded per source. Stripe authenticates by
 * signature, not by bearer token, so this route is exempt from the token check
 * (see app.ts). Registered as its own plugin: the raw-body parser stays scoped
 * to this route.
 */
export async function registerStripeWebhookRoutes(app: FastifyInstance, deps: StripeWebhookRouteDeps): Promise<void> {
  const { models, encryption } = deps.db;
  const inbox = plainCollection<WebhookEventRecord>(deps.db, models.WebhookEvent);
  const withinAuditBudget = createAuditBudget(deps.redis, deps.keyPrefix);

  async function audit(request: FastifyRequest, event: Omit<AuditEventInput, 'requestId' | 'route' | 'sealed'>) {
    const sealed = await sealRequestContext(request, event.companyId, encryption);
    await enqueueAuditEvent(deps.queues.audit, { ...event, requestId: request.id, route: routeOf(request), sealed });
  }

  async function reject(
    request: FastifyRequest,
    reply: FastifyReply,
    reason: WebhookRejection,
    configId: string | undefined,
    trail: string,
    target?: PaymentTarget,
  ): Promise<never> {
    const forged = FORGERY_REASONS.has(reason);
    if (forged) await deps.authFailures.record(request.ip);
    const refusal = async () => {
      if (forged) await refuseSpentSource(deps.authFailures, request, reply);
      return new ApiError(400, reason, REJECTION_MESSAGES[reason]);
    };
    const budget = await withinAuditBudget('webhook-rejected', trail, reason, request.ip);
    if (!budget.audit) {
      request.log.warn(
        { reason, rejectionsThisMinute: budget.counts },
        'stripe webhook rejected (over the audit bound: not audited)',
      );
      throw await refusal();
    }
    try {
      await withDeadline(
        audit(request, {
          eventId: `evt_${ulid()}`,
          companyId: trail,
          ...(target?.officeId && trail !== PLATFORM_AUDIT_SCOPE ? { officeId: target.officeId } : {}),
          action: 'webhook.rejected',
          outcome: 'denied',
          actor: { type: 'anonymous', id: 'anonymous' },
          resource: configId ? { type: 'payment_config', id: configId } : { type: 'route', id: 'unknown' },
          reason,
          occurredAt: new Date().toISOString(),
        }),
        ENQUEUE_DEADLINE_MS,
        'audit enqueue',
      );
    } catch (error) {
      // Stripe gets its 400 regardless; the log line is the record of last resort.
      request.log.error({ err: error, reason }, 'could not enqueue webhook.rejected audit event');
    }
    request.log.warn({ reason }, 'stripe webhook rejected');
    throw await refusal();
  }

  await app.register(async (scope) => {
    // Signatures cover the exact bytes Stripe sent: nothing may parse (and re-serialize) them first.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) =>
      done(null, body),
    );

    scope.post(STRIPE_WEBHOOK_ROUTE, { bodyLimit: WEBHOOK_BODY_LIMIT }, async (request, reply) => {
      const { configId } = request.params as { configId?: string };
      const target = parseConfigId(configId);
      if (!target) return reject(request, reply, 'config_unknown', undefined, PLATFORM_AUDIT_SCOPE);
      const header = [request.headers['stripe-signature']].flat()[0];
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      let received;
      try {
        received = await receiveWebhookEvent(
          {
            models,
            encryption,
            settings: deps.settings,
            inbox,
            enqueueEvent: (job, replays) => enqueueStripeEvent(deps.queues['stripe-events'], job, replays),
            enqueueAudit: (event) => audit(request, event),
            logger: request.log,
          },
          { target, raw, signature: header },
        );
      } catch (error) {
        if (!(error instanceof WebhookNotQueuedError)) throw error;
        // Stripe retries a non-2xx delivery; the stored event is enqueued then.
        throw new ApiError(503, 'queue_unavailable', 'the event was stored but could not be queued; retry later');
      }
      if (received.outcome === 'rejected')
        return reject(request, reply, received.reason, configId, received.trail, target);
      return reply.status(200).send({ received: true });
    });
  });
}
