import { ZodError, z } from 'zod';
import { transitionEventId } from '../../domain/audit-actions';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import type { Queues } from '../../queues';
import { auditEventSchema, type AuditEventInput } from '../../domain/audit-event';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { STRIPE_EVENT_ID } from '../../domain/stripe-ids';
import { enqueueStripeEvent, replayKey, stripeEventJobId } from '../../queues/stripe-events.queue';
import { ensureJob } from '../../queues/job-options';
import type { Models } from '../../models';
import { isDuplicateKeyError } from '../../models/errors';
import { inboxKeys, isFinishedWebhookEvent, type WebhookEventRecord } from '../../models/webhook-event.model';

export interface WebhookReplayDeps {
  models: Pick<Models, 'Company' | 'WebhookEvent' | 'WebhookReplayClaim'>;
  queues: Pick<Queues, 'stripe-events' | 'audit'>;
}

/** Why ops replay an event: a reason code, since the audit trail takes no free text. */
export const replayReasonSchema = z.string().regex(/^[a-z0-9_]{3,64}$/, 'a reason code (a-z, 0-9, _), not free text');

export interface WebhookReplayRequest {
  companyId: string;
  eventId: string;
  reason: string;
  actor: AuditEventInput['actor'];
  /** Where the request came from (api): called only once the company is known not to be shredded. */
  origin?: {
    requestId?: string;
    route?: string;
    seal?: () => Promise<AuditEventInput['sealed']>;
  };
}

export type WebhookReplayResult =
  | { outcome: 'not_found' }
  | { outcome: 'shredded' }
  | {
      outcome: 'queued';
      event: { id: string; status: 'received'; replays: number };
      /** false: the event was not processed yet, so it was only given a job. */
      reset: boolean;
    };

/** The row is `received` (reset, or never processed) but its job or audit event could not be queued (Redis down). */
export class WebhookReplayNotQueuedError extends Error {
  constructor(
    readonly eventId: string,
    options: { cause: unknown },
  ) {
    super(`webhook event ${eventId} is ready for replay but could not be queued`, options);
    this.name = 'WebhookReplayNotQueuedError';
  }
}

// Nothing here needs the payload; reading it would decrypt it (and fail for a shredded company).
const WITHOUT_PAYLOAD = { payload: 0 } as const;
// Losing the reset to a concurrent replay (or to the worker) means reading the row again.
const MAX_ROUNDS = 5;

type ReplayRow = Pick<WebhookEventRecord, '_id' | 'officeId' | 'status' | 'replays' | 'outcome' | 'replayAudit'>;

/**
 * Replays a stored Stripe event of `companyId`. A finished one (applied, ignored,
 * failed) is reset to `received` with `replays` incremented by the replay that
 * claimed that replay number (an insert under a unique id, so of concurrent
 * replays exactly one resets it, even where concurrent updates can be lost),
 * then a job of its own is queued (`stripe-event-<id>-replay-<n>`) and
 * `webhook.replayed` audited (id from the event and replay number, so a retry
 * records it once). The event is written with the reset (`replayAudit`), and the
 * worker that processes the replay sends it too: if the process dies after the
 * reset (or Redis does not take the enqueue), the outbox sweep queues the row
 * under the same job id and the replay is still recorded, once. One still
 * `received` is not reset: it only gets a job if it has none (and its stored
 * replay event, if any, is sent again). Another company's event is `not_found`,
 * like an unknown one.
 */
export async function replayWebhookEvent(
  deps: WebhookReplayDeps,
  request: WebhookReplayRequest,
): Promise<WebhookReplayResult> {
  const { companyId, eventId } = request;
  // Checked before anything changes: a bad reason would otherwise fail the audit event after the reset.
  if (!STRIPE_EVENT_ID.test(eventId)) throw new Error(`"${eventId}" is not a Stripe event id`);
  replayReasonSchema.parse(request.reason);
  const { Company, WebhookEvent } = deps.models;

  const company = await Company.findById(companyId, { shreddedAt: 1 }).lean();
  if (!company) return { outcome: 'not_found' };
  // Its events could only fail again, and sealing the audit context would give it a new data key.
  if (company.shreddedAt) return { outcome: 'shredded' };
  const sealed = await request.origin?.seal?.();

  for (let round = 0; round < MAX_ROUNDS; round += 1) {
    // Stripe's event id names the company's copy under either inbox key (models/webhook-event.model.ts).
    const row: ReplayRow | null = await WebhookEvent.findOne(
      { _id: { $in: inboxKeys(companyId, eventId) }, companyId },
      WITHOUT_PAYLOAD,
    ).lean();
    if (!row) return { outcome: 'not_found' };
    const key = row._id;
    if (row.status === 'failed' && row.outcome?.reason === 'data_shredded') return { outcome: 'shredded' };
    const { replays } = row;
    if (!isFinishedWebhookEvent(row.status)) {
      await queueReplay(deps, row, row.replayAudit ?? replayedEvent(request, sealed, row, []));
      return { outcome: 'queued', event: { id: eventId, status: 'received', replays }, reset: false };
    }

    if (!(await claimReplay(deps.models.WebhookReplayClaim, key, replays + 1))) {
      // Another replay holds this number and is resetting the row: look again once it had time to.
      await new Promise((resolve) => setTimeout(resolve, 50 * (round + 1)));
      continue;
    }
    const replayed = { ...row, replays: replays + 1 };
    const audit = replayedEvent(request, sealed, replayed, [
      { field: 'status', before: row.status, after: 'received' },
      { field: 'outcome.reason', before: row.outcome?.reason ?? null, after: null },
      { field: 'replays', before: String(replays), after: String(replays + 1) },
    ]);
    const reset = await WebhookEvent.updateOne(
      { _id: key, companyId, status: row.status, replays: row.replays },
      {
        $set: { status: 'received', replays: replays + 1, replayAudit: audit },
        $unset: { pending: 1, outcome: 1, processedAt: 1 },
      },
    );
    if (reset.modifiedCount === 1) {
      await queueReplay(deps, replayed, audit);
      return { outcome: 'queued', event: { id: eventId, status: 'received', replays: replays + 1 }, reset: true };
    }
  }
  throw new Error(`webhook event ${eventId} kept changing while being replayed`);
}

/** A claim older than this belongs to a replay that died before resetting the row; a new replay may take it over. */
const ABANDONED_CLAIM_MS = 60_000;

/** Claims replay number `n` of an event: the insert under its unique id succeeds for exactly one replay. */
async function claimReplay(Claim: WebhookReplayDeps['models']['WebhookReplayClaim'], eventId: string, n: number) {
  const _id = `${eventId}-replay-${n}`;
  try {
    await Claim.insertMany([{ _id, eventId, claimedAt: new Date() }], { lean: true });
    return true;
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    const held = await Claim.findById(_id).lean();
    return !held || Date.now() - held.claimedAt.getTime() > ABANDONED_CLAIM_MS;
  }
}

/**
 * `webhook.replayed` for replay `row.replays` of the row: its id derives from the event and replay number, so
 * whoever sends it (this replay, a retry, the worker processing the replay) records it once. Checked against the
 * audit schema here, before anything is written: a bad event would otherwise fail only after the reset.
 */
function replayedEvent(
  request: WebhookReplayRequest,
  sealed: AuditEventInput['sealed'],
  row: ReplayRow,
  changes: NonNullable<AuditEventInput['changes']>,
): AuditEventInput {
  return auditEventSchema.parse({
    eventId: transitionEventId('webhook.replayed', replayKey(row._id, row.replays)),
    companyId: request.companyId,
    ...(row.officeId ? { officeId: row.officeId } : {}),
    action: 'webhook.replayed',
    outcome: 'success',
    actor: request.actor,
    resource: { type: 'webhook_event', id: row._id },
    reason: request.reason,
    permission: 'webhook_events:replay',
    ...(changes.length > 0 ? { changes } : {}),
    ...(request.origin?.requestId ? { requestId: request.origin.requestId } : {}),
    ...(request.origin?.route ? { route: request.origin.route } : {}),
    ...(sealed ? { sealed } : {}),
    occurredAt: new Date().toISOString(),
  });
}

/**
 * Queues the row's job and its `webhook.replayed` event together. Both ids are
 * deterministic, so a retry (or the sweep and the worker) adds nothing twice.
 */
async function queueReplay(deps: WebhookReplayDeps, row: ReplayRow, audit: AuditEventInput): Promise<void> {
  const queue = deps.queues['stripe-events'];
  const { replays } = row;
  try {
    await withDeadline(
      Promise.all([
        ensureJob(queue, stripeEventJobId(row._id, replays), () =>
          enqueueStripeEvent(queue, { eventId: row._id }, replays),
        ),
        enqueueAuditEvent(deps.queues.audit, audit),
      ]),
      ENQUEUE_DEADLINE_MS,
      'replay enqueue',
    );
  } catch (error) {
    // An event that does not fit the audit schema is a bug, not an outage.
    if (error instanceof ZodError) throw error;
    throw new WebhookReplayNotQueuedError(row._id, { cause: error });
  }
}
