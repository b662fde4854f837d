import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Redis } from 'ioredis';
import Stripe from 'stripe';
import { ulid } from 'ulid';
import { z } from 'zod';
import { PLATFORM_AUDIT_SCOPE, transitionEventId } from '../../domain/audit-actions';
import { resolvePaymentConfig } from '../../domain/payment-config';
import type { Database } from '../../models';
import { isShreddedDataError } from '../../models/encryption';
import { isDuplicateKeyError } from '../../models/errors';
import { loadPaymentLevels, type PaymentTarget } from '../../models/payment-config';
import { isFinishedWebhookEvent } from '../../models/webhook-event.model';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import type { Queues } from '../../queues';
import { type AuditEventInput } from '../../domain/audit-event';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { enqueueStripeEvent, STRIPE_EVENT_ID } from '../../queues/stripe-events.queue';
import { routeOf } from '../access-guard';
import { sealRequestContext } from '../audit-context';
import { ApiError } from '../errors';

export interface StripeWebhookRouteDeps {
  db: Pick<Database, 'models' | 'encryption'>;
  queues: Pick<Queues, 'stripe-events' | 'audit'>;
  /** Counts rejected deliveries, so a flood of forged ones cannot flood the audit trail. */
  redis: Redis;
  keyPrefix: string;
}

export const STRIPE_WEBHOOK_ROUTE = '/v1/webhooks/stripe/:configId';
/** Stripe's own default: a signed delivery older than this is refused as a possible replay. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;
// Payment events are a few KB; some Stripe objects (invoices with many lines) are far larger.
const WEBHOOK_BODY_LIMIT = 512 * 1024;
/**
 * Rejected deliveries audited per source address, endpoint and reason each minute;
 * beyond that they are only logged. Stripe itself is never rejected, so this only
 * ever bounds what a forger (or a misconfigured secret) can write into the trail.
 */
export const REJECTIONS_AUDITED_PER_MINUTE = 20;
const CONFIG_ID = /^([A-Za-z0-9_-]{1,64})(?:\.([A-Za-z0-9_-]{1,64}))?$/;

export type WebhookRejection =
  | 'config_unknown'
  | 'webhook_secret_missing'
  | 'company_shredded'
  | 'signature_missing'
  | 'signature_malformed'
  | 'signature_invalid'
  | 'timestamp_outside_tolerance'
  | 'payload_invalid';

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

/** Only what the ingress needs to store the event; the worker reads the rest from the stored payload. */
const eventEnvelopeSchema = z.object({
  id: z.string().regex(STRIPE_EVENT_ID),
  type: z.string().regex(/^[a-z0-9_.]{1,100}$/),
  livemode: z.boolean(),
  created: z.number().int().positive(),
});
type EventEnvelope = z.infer<typeof eventEnvelopeSchema>;

export function parseConfigId(configId: unknown): PaymentTarget | undefined {
  const match = typeof configId === 'string' ? CONFIG_ID.exec(configId) : null;
  if (!match) return undefined;
  return { companyId: match[1]!, ...(match[2] ? { officeId: match[2] } : {}) };
}

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

/**
 * Stripe webhooks: verify on the raw bytes, store the event (encrypted) in the
 * inbox, enqueue its id, answer 200. Stripe authenticates by signature, not by
 * bearer token, so this route is exempt from the token check (see app.ts).
 * Registered as its own plugin: the raw-body parser stays scoped to this route.
 */
export async function registerStripeWebhookRoutes(app: FastifyInstance, deps: StripeWebhookRouteDeps): Promise<void> {
  const { models, encryption } = deps.db;

  async function audit(request: FastifyRequest, event: Omit<AuditEventInput, 'requestId' | 'route' | 'sealed'>) {
    const sealed = await sealRequestContext(request, event.companyId, encryption);
    await enqueueAuditEvent(deps.queues.audit, { ...event, requestId: request.id, route: routeOf(request), sealed });
  }

  async function reject(
    request: FastifyRequest,
    reason: WebhookRejection,
    configId: string | undefined,
    trail: string,
    target?: PaymentTarget,
  ): Promise<never> {
    const minute = Math.floor(Date.now() / 60_000);
    const counter = `${deps.keyPrefix}:webhook-rejections:${minute}:${trail}:${reason}:${request.ip}`;
    // If Redis cannot count, audit anyway: the bound protects the trail, it must not hide an attack.
    const seen = await deps.redis
      .multi()
      .incr(counter)
      .expire(counter, 120)
      .exec()
      .then((results) => Number(results?.[0]?.[1] ?? 0))
      .catch(() => 0);
    if (seen > REJECTIONS_AUDITED_PER_MINUTE) {
      request.log.warn(
        { reason, rejectionsThisMinute: seen },
        'stripe webhook rejected (over the audit bound: not audited)',
      );
      throw new ApiError(400, reason, REJECTION_MESSAGES[reason]);
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
    throw new ApiError(400, reason, REJECTION_MESSAGES[reason]);
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
      if (!target) return reject(request, 'config_unknown', undefined, PLATFORM_AUDIT_SCOPE);
      const { companyId, officeId } = target;
      const levels = await loadPaymentLevels(models, target).catch((error: unknown) => {
        if (isShreddedDataError(error)) return undefined;
        throw error;
      });
      // Unreadable (data key gone): only then is the company asked for on its own, to tell missing from shredded.
      const companyExists = levels ? levels.companyExists : Boolean(await models.Company.exists({ _id: companyId }));
      // A company that does not exist gets no trail (and no data key) of its own; neither does a shredded one.
      if (!companyExists) return reject(request, 'config_unknown', configId, PLATFORM_AUDIT_SCOPE, target);
      if (!levels || levels.companyShredded)
        return reject(request, 'company_shredded', configId, PLATFORM_AUDIT_SCOPE, target);

      const resolved = resolvePaymentConfig(levels.company, levels.office);
      if (!resolved.ok) return reject(request, 'config_unknown', configId, companyId, target);
      const secrets = resolved.settings.webhookSigningSecrets ?? [];
      if (secrets.length === 0) return reject(request, 'webhook_secret_missing', configId, companyId, target);

      const header = [request.headers['stripe-signature']].flat()[0];
      const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      const verified = verifyStripeEvent(raw, header, secrets);
      if (!verified.ok) return reject(request, verified.reason, configId, companyId, target);
      const { event } = verified;
      const log = request.log.child({ stripeEventId: event.id, stripeEventType: event.type, companyId });

      let enqueue = true;
      // A redelivery while a replay is pending must name the replay's job, not start a second one.
      let replays = 0;
      try {
        await models.WebhookEvent.create({
          _id: event.id,
          companyId,
          ...(officeId ? { officeId } : {}),
          type: event.type,
          livemode: event.livemode,
          created: new Date(event.created * 1000),
          receivedAt: new Date(),
          status: 'received',
          payload: await encryption.encrypt(companyId, raw.toString('utf8')),
        });
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
        const stored = await models.WebhookEvent.findById(event.id, { status: 1, companyId: 1, replays: 1 }).lean();
        if (!stored) throw error;
        // A finished event is only acknowledged; an unfinished one is enqueued again (same job id: no double work).
        enqueue = stored.companyId === companyId && !isFinishedWebhookEvent(stored.status);
        replays = stored.replays;
        if (stored.companyId !== companyId) log.warn('stripe event already stored for another company; not enqueued');
        log.info({ status: stored.status }, 'stripe event redelivered');
      }

      try {
        await withDeadline(
          Promise.all([
            enqueue ? enqueueStripeEvent(deps.queues['stripe-events'], { eventId: event.id }, replays) : undefined,
            // One receipt per event, whichever delivery records it.
            audit(request, {
              eventId: transitionEventId('webhook.received', event.id),
              companyId,
              ...(officeId ? { officeId } : {}),
              action: 'webhook.received',
              outcome: 'success',
              actor: { type: 'service', id: 'stripe' },
              resource: { type: 'webhook_event', id: event.id },
              occurredAt: new Date().toISOString(),
            }),
          ]),
          ENQUEUE_DEADLINE_MS,
          'enqueue',
        );
      } catch (error) {
        log.error({ err: error }, 'stripe event stored but not queued');
        // Stripe retries a non-2xx delivery; the stored event is enqueued then.
        throw new ApiError(503, 'queue_unavailable', 'the event was stored but could not be queued; retry later');
      }
      return reply.status(200).send({ received: true });
    });
  });
}
