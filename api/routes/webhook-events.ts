import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import {
  replayReasonSchema,
  replayWebhookEvent,
  WebhookReplayNotQueuedError,
  type WebhookReplayResult,
} from '../../application/webhooks/replay-event';
import type { Queues } from '../../queues';
import { STRIPE_EVENT_ID } from '../../domain/stripe-ids';
import { routeOf, type AccessGuard } from '../access-guard';
import { sealRequestContext } from '../audit-context';
import { ApiError } from '../errors';
import { parse, scopeIdSchema } from '../validation';

export interface WebhookEventRouteDeps {
  models: Pick<Models, 'Company' | 'WebhookEvent' | 'WebhookReplayClaim'>;
  queues: Pick<Queues, 'stripe-events' | 'audit'>;
  authorize: AccessGuard['authorize'];
  encryption: Pick<FieldEncryption, 'encrypt'>;
}

export const replayParams = z.object({ companyId: scopeIdSchema, eventId: z.string().regex(STRIPE_EVENT_ID) }).strict();
export const replayBody = z.object({ reason: replayReasonSchema }).strict();

/** Ops tools for the Stripe webhook inbox. */
export function registerWebhookEventRoutes(app: FastifyInstance, deps: WebhookEventRouteDeps): void {
  /**
   * Re-processes a stored event (e.g. one ignored as `payment_not_found` because
   * it arrived before its payment existed). 202: the worker does the rest.
   */
  app.post('/v1/companies/:companyId/webhook-events/:eventId/replay', { bodyLimit: 1024 }, async (request, reply) => {
    const { companyId, eventId } = parse(replayParams, request.params);
    const { reason } = parse(replayBody, request.body ?? {});
    await deps.authorize(request, 'webhook_events:replay', {
      companyId,
      resource: { type: 'webhook_event', id: eventId },
    });
    const principal = request.principal!;
    let result: WebhookReplayResult;
    try {
      result = await replayWebhookEvent(deps, {
        companyId,
        eventId,
        reason,
        actor: { type: principal.subjectType, id: principal.subject, roles: principal.roles },
        origin: {
          requestId: request.id,
          route: routeOf(request),
          seal: () => sealRequestContext(request, companyId, deps.encryption),
        },
      });
    } catch (error) {
      if (!(error instanceof WebhookReplayNotQueuedError)) throw error;
      request.log.error({ err: error.cause, eventId }, 'webhook event ready for replay but not queued');
      // The row is `received` with its webhook.replayed event: the outbox sweep queues it, and its worker records the
      // replay; a retry now does both at once.
      throw new ApiError(
        503,
        'queue_unavailable',
        'the event is ready for replay but could not be queued; the outbox sweep queues it (and the replay is audited) once the queue is back',
      );
    }
    if (result.outcome === 'not_found') {
      throw new ApiError(404, 'webhook_event_not_found', 'no such webhook event');
    }
    if (result.outcome === 'shredded') {
      throw new ApiError(
        410,
        'data_shredded',
        "this company's encrypted data was destroyed (crypto-shredded) and cannot be read",
      );
    }
    request.log.info(
      { eventId, replays: result.event.replays, reset: result.reset },
      'webhook event queued for replay',
    );
    return reply.status(202).send(result.event);
  });
}
