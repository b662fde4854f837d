import { type Job, type Queue, type Worker } from 'bullmq';
import type { Models } from '../models';
import type { Logger } from '../platform/logger';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../queues/charges.queue';
import { MAINTENANCE_JOBS, type MaintenanceJob } from '../queues/maintenance.queue';
import type { AnchorSigner, AuditTrail } from '../models/audit-trail';
import { enqueueAuditEvent, type AuditJob } from '../queues/audit.queue';
import { ensureJob } from '../queues/job-options';
import { QUEUE_NAMES } from '../queues/names';
import { enqueueStripeEvent, stripeEventJobId, type StripeEventJob } from '../queues/stripe-events.queue';
import { enqueueRefund, refundJobId, type RefundJob } from '../queues/refunds.queue';
import { releaseOrphanedHolds } from '../models/refund-ledger.model';
import { transitionEventId } from '../domain/audit-actions';
import { createQueueWorker, JobFailedError, type QueueWorkerOptions } from './queue-worker';

export interface MaintenanceDeps {
  models: Pick<Models, 'Payment' | 'WebhookEvent' | 'Refund' | 'RefundLedger'>;
  chargesQueue: Queue<ChargeJob>;
  stripeEventsQueue: Queue<StripeEventJob>;
  refundsQueue: Queue<RefundJob>;
  auditQueue: Queue<AuditJob>;
  auditTrail: Pick<AuditTrail, 'anchorHeads' | 'purgeBefore'>;
  anchorSigner: AnchorSigner;
  logger: Logger;
  staleAfterMs: number;
  retentionDays: number;
  now?: () => Date;
}

export interface SweepResult {
  examined: number;
  requeued: number;
}

const SWEEP_BATCH = 500;

/**
 * The outbox sweep: anything left unfinished for longer than `staleAfterMs`
 * with no live job gets one. This finishes a payment whose enqueue was lost to
 * a Redis outage, whose retries ran out during a gateway outage, or that waits
 * on a gateway decision (the charge worker then re-reads the intent); and a
 * stored Stripe event whose enqueue failed when Stripe does not deliver it again.
 * Refunds likewise (when given their queue), and a refund hold whose request
 * stopped before writing the refund is released.
 */
export async function sweepOutbox(
  deps: Pick<MaintenanceDeps, 'models' | 'chargesQueue' | 'stripeEventsQueue' | 'logger' | 'staleAfterMs' | 'now'> &
    Partial<Pick<MaintenanceDeps, 'refundsQueue'>>,
): Promise<SweepResult> {
  const cutoff = new Date((deps.now?.() ?? new Date()).getTime() - deps.staleAfterMs);
  const [payments, events] = await Promise.all([
    deps.models.Payment.find(
      { status: { $in: ['queued', 'processing'] }, updatedAt: { $lt: cutoff } },
      { requestId: 1 },
    )
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean(),
    deps.models.WebhookEvent.find({ status: 'received', receivedAt: { $lt: cutoff } }, { _id: 1, replays: 1 })
      .sort({ receivedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean(),
  ]);

  let requeued = 0;
  for (const payment of payments) {
    const acted = await ensureJob(deps.chargesQueue, chargeJobId(payment._id), () =>
      enqueueCharge(deps.chargesQueue, { paymentId: payment._id, requestId: payment.requestId }),
    );
    if (acted) requeued += 1;
  }
  for (const event of events) {
    // A replayed event (ops reset it to received) has a job of its own per replay: the same id the replay used.
    const acted = await ensureJob(deps.stripeEventsQueue, stripeEventJobId(event._id, event.replays), () =>
      enqueueStripeEvent(deps.stripeEventsQueue, { eventId: event._id }, event.replays),
    );
    if (acted) requeued += 1;
  }
  let refundsExamined = 0;
  const { refundsQueue } = deps;
  if (refundsQueue) {
    const refunds = await deps.models.Refund.find(
      { status: { $in: ['queued', 'processing'] }, updatedAt: { $lt: cutoff } },
      { requestId: 1 },
    )
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    refundsExamined = refunds.length;
    for (const refund of refunds) {
      const acted = await ensureJob(refundsQueue, refundJobId(refund._id), () =>
        enqueueRefund(refundsQueue, { refundId: refund._id, requestId: refund.requestId }),
      );
      if (acted) requeued += 1;
    }
  }
  const holds = await releaseOrphanedHolds(deps.models, cutoff);
  if (holds.released > 0) deps.logger.info({ released: holds.released }, 'outbox sweep released orphaned refund holds');
  const examined = payments.length + events.length + refundsExamined + holds.examined;
  if (requeued > 0) deps.logger.info({ examined, requeued }, 'outbox sweep re-enqueued stale work');
  return { examined, requeued };
}

/**
 * Retention (no TTL index: FerretDB has none, and a purge must be audited):
 * removes events older than the retention period, leaving a signed checkpoint
 * so the rest of each chain still verifies, and records the purge itself.
 */
export async function purgeExpiredAuditEvents(
  deps: Pick<MaintenanceDeps, 'auditQueue' | 'auditTrail' | 'anchorSigner' | 'logger' | 'retentionDays' | 'now'>,
): Promise<{ companies: number; removed: number }> {
  const now = deps.now?.() ?? new Date();
  const cutoff = new Date(now.getTime() - deps.retentionDays * 24 * 60 * 60 * 1000);
  const purged = await deps.auditTrail.purgeBefore(
    cutoff,
    deps.anchorSigner,
    ({ companyId, removed, throughSequence }) =>
      // Deterministic id: a purge retried after a crash records itself once.
      enqueueAuditEvent(deps.auditQueue, {
        eventId: transitionEventId('audit.purged', `${companyId}-${throughSequence}`),
        companyId,
        action: 'audit.purged',
        outcome: 'success',
        actor: { type: 'system', id: 'audit-retention' },
        resource: { type: 'audit_trail', id: companyId },
        changes: [
          { field: 'removedThroughSequence', before: null, after: String(throughSequence) },
          { field: 'removedEvents', before: null, after: String(removed) },
        ],
        occurredAt: now.toISOString(),
      }),
    now,
  );
  if (purged.length > 0) deps.logger.info({ companies: purged.length }, 'audit retention purge done');
  return { companies: purged.length, removed: purged.reduce((sum, p) => sum + p.removed, 0) };
}

export type MaintenanceResult = SweepResult | { anchored: number } | { companies: number; removed: number };

export async function processMaintenance(job: Job<MaintenanceJob>, deps: MaintenanceDeps): Promise<MaintenanceResult> {
  switch (job.name) {
    case MAINTENANCE_JOBS.outboxSweep:
      return sweepOutbox(deps);
    case MAINTENANCE_JOBS.auditAnchor:
      return { anchored: await deps.auditTrail.anchorHeads(deps.anchorSigner, deps.now?.()) };
    case MAINTENANCE_JOBS.auditRetention:
      return purgeExpiredAuditEvents(deps);
    default:
      throw new JobFailedError('unknown_maintenance_job', `unknown maintenance job ${job.name}`);
  }
}

export function createMaintenanceWorker(
  deps: MaintenanceDeps & Omit<QueueWorkerOptions, 'concurrency'>,
): Worker<MaintenanceJob, MaintenanceResult> {
  return createQueueWorker(QUEUE_NAMES.maintenance, processMaintenance, { ...deps, concurrency: 1 });
}
