import { type Job, type Queue, type Worker } from 'bullmq';
import type { Models } from '../models';
import type { Logger } from '../platform/logger';
import type { ChargeJob } from '../queues/charges.queue';
import { MAINTENANCE_JOBS, type MaintenanceJob } from '../queues/maintenance.queue';
import type { AnchorSigner, AuditTrail } from '../models/audit-trail';
import { enqueueAuditEvent, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';
import type { StripeEventJob } from '../queues/stripe-events.queue';
import type { RefundJob } from '../queues/refunds.queue';
import type { RenewalJob } from '../queues/renewals.queue';
import type { InvoiceJob } from '../queues/invoices.queue';
import type { WebhookDeliveryJob } from '../queues/webhook-deliveries.queue';
import { sweepOutbox, type SweepResult } from '../application/outbox/sweep-outbox';
import {
  reconcileWithGateway,
  type ReconcileDeps,
  type ReconcileResult,
} from '../application/reconcile/reconcile-gateway';
import { transitionEventId } from '../domain/audit-actions';
import { outboxRequeued } from '../platform/metrics';
import { createQueueWorker, JobFailedError, type QueueWorkerOptions } from './queue-worker';

export interface MaintenanceDeps extends Omit<ReconcileDeps, 'models' | 'afterMs'> {
  models: Pick<
    Models,
    | 'Company'
    | 'Office'
    | 'Payment'
    | 'WebhookEvent'
    | 'Refund'
    | 'RefundLedger'
    | 'Invoice'
    | 'TestClock'
    | 'WebhookDelivery'
  >;
  chargesQueue: Queue<ChargeJob>;
  stripeEventsQueue: Queue<StripeEventJob>;
  refundsQueue: Queue<RefundJob>;
  renewalsQueue: Queue<RenewalJob>;
  auditQueue: Queue<AuditJob>;
  invoicesQueue: Queue<InvoiceJob>;
  webhookDeliveries: { queue: Queue<WebhookDeliveryJob>; retryScheduleMs: readonly number[] };
  auditTrail: Pick<AuditTrail, 'anchorHeads' | 'purgeBefore'>;
  anchorSigner: AnchorSigner;
  logger: Logger;
  staleAfterMs: number;
  reconcileAfterMs: number;
  retentionDays: number;
  now?: () => Date;
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

export type MaintenanceResult =
  SweepResult | ReconcileResult | { anchored: number } | { companies: number; removed: number };

export async function processMaintenance(job: Job<MaintenanceJob>, deps: MaintenanceDeps): Promise<MaintenanceResult> {
  switch (job.name) {
    case MAINTENANCE_JOBS.outboxSweep: {
      const swept = await sweepOutbox(deps);
      for (const [source, count] of Object.entries(swept.requeuedBy ?? {})) outboxRequeued.inc({ source }, count);
      return swept;
    }
    case MAINTENANCE_JOBS.auditAnchor:
      return { anchored: await deps.auditTrail.anchorHeads(deps.anchorSigner, deps.now?.()) };
    case MAINTENANCE_JOBS.auditRetention:
      return purgeExpiredAuditEvents(deps);
    case MAINTENANCE_JOBS.gatewayReconcile:
      return reconcileWithGateway({ ...deps, afterMs: deps.reconcileAfterMs });
    default:
      throw new JobFailedError('unknown_maintenance_job', `unknown maintenance job ${job.name}`);
  }
}

export function createMaintenanceWorker(
  deps: MaintenanceDeps & Omit<QueueWorkerOptions, 'concurrency'>,
): Worker<MaintenanceJob, MaintenanceResult> {
  return createQueueWorker(QUEUE_NAMES.maintenance, processMaintenance, { ...deps, concurrency: 1 });
}
