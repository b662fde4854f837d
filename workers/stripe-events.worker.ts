import { type Job, type Worker } from 'bullmq';
import { MAX_DECISIONS } from '../domain/decision-rounds';
import { transitionEventId, type AuditAction } from '../domain/audit-actions';
import { PAYMENT_ID } from '../domain/payment-request';
import {
  decidePaymentTransition,
  PAYMENT_INTENT_EVENT_TARGETS,
  type PaymentIntentEventType,
} from '../domain/payment-transitions';
import { DISPUTE_EVENT_TYPES } from '../domain/dispute-transitions';
import { auditPaymentOutcome, recordPaymentOutcome } from '../application/payments/record-outcome';
import type { PaymentOutcome } from '../domain/payment-outcome';
import { isShreddedDataError } from '../models/encryption';
import type { WebhookEventRecord, WebhookEventStatus } from '../models/webhook-event.model';
import { QUEUE_NAMES } from '../queues/names';
import { replayKey, stripeEventJobSchema, type StripeEventJob } from '../queues/stripe-events.queue';
import { createQueueWorker, JobFailedError, type JobContext, type QueueWorkerOptions } from './queue-worker';
import { bindEventToRecord } from './stripe-events/binding';
import { applyDisputeEvent } from './stripe-events/dispute-events';
import { REFUND_EVENT_HANDLERS } from './stripe-events/refund-events';
import {
  paymentOutcome,
  STRIPE_EVENTS_ACTOR,
  type EventOutcome,
  type StripeEventDeps,
  type StripeEventHandler,
} from './stripe-events/handler';
import { applySetupIntentSucceeded } from './stripe-events/setup-intent-events';

export interface StripeEventResult {
  eventId: string;
  status: WebhookEventStatus;
  reason?: string;
}

/** The parts of a PaymentIntent (as Stripe sends it in `data.object`) that are read here. */
interface IntentObject {
  id?: unknown;
  metadata?: { payment_id?: unknown } | null;
  client_secret?: unknown;
  next_action?: { type?: unknown } | null;
  last_payment_error?: { code?: unknown; decline_code?: unknown; message?: unknown } | null;
}

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/**
 * Applies one stored, verified Stripe event. Safe to run any number of times:
 * a finished inbox row is left alone, transitions are conditional
 * single-document updates (`{_id, status: from}`), audit event ids derive from
 * the Stripe event id, and the row is marked finished last.
 */
export async function processStripeEvent(
  job: Job<StripeEventJob>,
  deps: StripeEventDeps,
  context: JobContext,
): Promise<StripeEventResult> {
  const parsed = stripeEventJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid stripe-events job payload');
  const { eventId } = parsed.data;
  const { WebhookEvent } = deps.models;
  const log = context.logger.child({ eventId });

  const row = await WebhookEvent.findById(eventId)
    .lean()
    .catch(async (error: unknown) => {
      if (!isShreddedDataError(error)) throw error;
      // The company was crypto-shredded after the event arrived: its payload can never be read again.
      await WebhookEvent.updateOne(
        { _id: eventId, status: 'received' },
        { $set: { status: 'failed', outcome: { reason: 'data_shredded' }, processedAt: new Date() } },
      );
      throw new JobFailedError('data_shredded', `stripe event ${eventId} belongs to a crypto-shredded company`);
    });
  if (!row) throw new JobFailedError('event_not_found', `stripe event ${eventId} is not in the inbox`);
  if (row.status !== 'received') {
    log.info({ status: row.status }, 'stripe event already processed; nothing to do');
    return { eventId, status: row.status, ...(row.outcome ? { reason: row.outcome.reason } : {}) };
  }
  // The replay that reset the row may have stopped (or lost Redis) before queuing its `webhook.replayed`: sent here
  // too, under the same id, so it is recorded once either way.
  if (row.replayAudit) await deps.enqueueAudit(row.replayAudit);

  let event: { type?: unknown; data?: { object?: unknown } };
  try {
    event = JSON.parse(String(row.payload)) as typeof event;
  } catch {
    await finish(row, { status: 'failed', reason: 'payload_unreadable' }, deps);
    throw new JobFailedError('payload_unreadable', `stripe event ${eventId} payload cannot be parsed`);
  }

  const object = event.data?.object;
  const handler = Object.prototype.hasOwnProperty.call(HANDLERS, row.type) ? HANDLERS[row.type] : undefined;
  const auditKey = replayKey(row._id, row.replays);
  // Types without a handler are acknowledged and recorded.
  const outcome: EventOutcome = handler
    ? await handler({
        row,
        object: object && typeof object === 'object' ? (object as Record<string, unknown>) : {},
        auditKey,
        job,
        deps,
      })
    : { status: 'ignored', reason: 'unhandled_type' };
  await auditOutcome(row, auditKey, outcome, job, deps);
  await finish(row, outcome, deps);
  log.info(
    { status: outcome.status, reason: outcome.reason, resource: outcome.resource },
    `stripe event ${outcome.status}`,
  );
  return { eventId, status: outcome.status, reason: outcome.reason };
}

const applyPaymentIntentEvent: StripeEventHandler = async ({ row, object, job, deps }) => {
  const type = row.type as PaymentIntentEventType;
  const intent = object as IntentObject;
  const { Payment, WebhookEvent } = deps.models;
  const paymentId = text(intent.metadata?.payment_id);
  if (!paymentId || !PAYMENT_ID.test(paymentId)) return paymentOutcome('ignored', 'payment_not_found');

  for (let round = 0; round < MAX_DECISIONS; round += 1) {
    const payment = await Payment.findById(paymentId).lean();
    if (!payment) return paymentOutcome('ignored', 'payment_not_found');
    // The config that verified the event names the company; another company's payment is never touched.
    if (payment.companyId !== row.companyId) return paymentOutcome('ignored', 'company_mismatch');
    // Only the PaymentIntent we created (its id is saved before confirming), from the configuration serving the
    // payment, in its key's mode: metadata is whatever the sender wrote.
    const binding = await bindEventToRecord(deps, row, payment, {
      kind: 'intent',
      eventObjectId: text(intent.id),
      recordedObjectId: payment.stripePaymentIntentId,
    });
    if (!binding.bound) return paymentOutcome('ignored', binding.reason, payment);

    const decision = decidePaymentTransition(payment.status, type);
    if (!decision.apply) {
      // This event's own earlier attempt applied the transition, then stopped before marking the row.
      const pending = round === 0 ? row.pending : undefined;
      if (pending && pending.paymentId === paymentId && pending.to === payment.status) {
        // Its outcome audit event may not have been sent; the id is deterministic, so sending it again is safe.
        await auditPaymentOutcome(deps, payment, { actor: STRIPE_EVENTS_ACTOR, jobId: job.id });
        return paymentOutcome('applied', `${pending.from}_to_${pending.to}`, payment);
      }
      return paymentOutcome('ignored', decision.reason, payment);
    }

    await WebhookEvent.updateOne(
      { _id: row._id, status: 'received' },
      { $set: { pending: { paymentId, from: decision.from, to: decision.to } } },
    );
    const applied = await recordPaymentOutcome(deps, payment, decision.from, outcomeOf(type, intent), {
      actor: STRIPE_EVENTS_ACTOR,
      jobId: job.id,
    });
    if (applied) return paymentOutcome('applied', `${decision.from}_to_${decision.to}`, applied);
  }
  // Still contended after several rounds: let BullMQ retry later.
  throw new Error(`payment ${paymentId} kept changing while applying stripe event ${row._id}`);
};

/** Event type → handler. Refunds, disputes and setup intents add theirs here. */
const HANDLERS: Readonly<Record<string, StripeEventHandler>> = {
  ...Object.fromEntries(Object.keys(PAYMENT_INTENT_EVENT_TARGETS).map((type) => [type, applyPaymentIntentEvent])),
  ...Object.fromEntries(DISPUTE_EVENT_TYPES.map((type) => [type, applyDisputeEvent])),
  'setup_intent.succeeded': applySetupIntentSucceeded,
  ...REFUND_EVENT_HANDLERS,
};

/** What a PaymentIntent event says about the payment, in the terms the outcome is recorded in. */
function outcomeOf(type: PaymentIntentEventType, intent: IntentObject): PaymentOutcome {
  const to = PAYMENT_INTENT_EVENT_TARGETS[type];
  if (to === 'failed') {
    const error = intent.last_payment_error;
    return {
      status: 'failed',
      failure:
        type === 'payment_intent.canceled'
          ? { code: 'payment_canceled', message: 'the payment was canceled' }
          : {
              code: text(error?.code) ?? 'payment_failed',
              message: text(error?.message) ?? 'the payment failed',
              ...(text(error?.decline_code) ? { declineCode: text(error?.decline_code) } : {}),
            },
    };
  }
  if (to === 'requires_action') {
    const clientSecret = text(intent.client_secret);
    return {
      status: 'requires_action',
      ...(clientSecret ? { clientSecret } : {}),
      nextActionType: text(intent.next_action?.type) ?? 'use_stripe_sdk',
    };
  }
  return { status: to };
}

async function auditOutcome(
  row: WebhookEventRecord,
  auditKey: string,
  outcome: EventOutcome,
  job: Job<StripeEventJob>,
  deps: StripeEventDeps,
): Promise<void> {
  const action: AuditAction = outcome.status === 'applied' ? 'webhook.applied' : 'webhook.ignored';
  const officeId = outcome.resource ? outcome.officeId : row.officeId;
  await deps.enqueueAudit({
    eventId: transitionEventId(action, auditKey),
    companyId: row.companyId,
    ...(officeId ? { officeId } : {}),
    action,
    outcome: 'success',
    actor: STRIPE_EVENTS_ACTOR,
    resource: outcome.resource ?? { type: 'webhook_event', id: row._id },
    reason: outcome.reason,
    ...(job.id ? { jobId: job.id } : {}),
    occurredAt: new Date().toISOString(),
  });
}

async function finish(
  row: WebhookEventRecord,
  outcome: { status: WebhookEventStatus; reason: string; resource?: EventOutcome['resource']; paymentId?: string },
  deps: StripeEventDeps,
): Promise<void> {
  await deps.models.WebhookEvent.updateOne(
    { _id: row._id, status: 'received' },
    {
      $set: {
        status: outcome.status,
        outcome: {
          reason: outcome.reason,
          ...(outcome.paymentId ? { paymentId: outcome.paymentId } : {}),
          ...(outcome.resource ? { resource: outcome.resource } : {}),
        },
        processedAt: new Date(),
      },
      $unset: { replayAudit: 1 },
    },
  );
}

export function createStripeEventsWorker(
  deps: StripeEventDeps & QueueWorkerOptions,
): Worker<StripeEventJob, StripeEventResult> {
  return createQueueWorker(QUEUE_NAMES.stripeEvents, processStripeEvent, deps);
}
