import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type Queue } from 'bullmq';
import type { Models } from '../models';
import type { Logger } from '../platform/logger';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../queues/charges.queue';
import { MAINTENANCE_JOBS, type MaintenanceJob } from '../queues/maintenance.queue';
import type { AnchorSigner, AuditTrail } from '../models/audit-trail';
import { enqueueAuditEvent, type AuditJob } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';

export interface MaintenanceDeps {
  models: Pick<Models, 'Payment'>;
  chargesQueue: Queue<ChargeJob>;
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
const LIVE_JOB_STATES = new Set(['waiting', 'active', 'delayed', 'prioritized', 'waiting-children']);

/**
 * The outbox sweep: any payment left unfinished for longer than `staleAfterMs`
 * with no live job gets one. This is what finishes a payment whose enqueue was
 * lost to a Redis outage, or whose retries ran out during a gateway outage, or
 * that waits on a gateway decision (the charge worker then re-reads the intent).
 */
export async function sweepOutbox(
  deps: Pick<MaintenanceDeps, 'models' | 'chargesQueue' | 'logger' | 'staleAfterMs' | 'now'>,
): Promise<SweepResult> {
  const cutoff = new Date((deps.now?.() ?? new Date()).getTime() - deps.staleAfterMs);
  const stale = await deps.models.Payment.find(
    { status: { $in: ['queued', 'processing'] }, updatedAt: { $lt: cutoff } },
    { _id: 1, requestId: 1 },
  )
    .sort({ updatedAt: 1 })
    .limit(SWEEP_BATCH)
    .lean();

  let requeued = 0;
  for (const payment of stale) {
    const job = await deps.chargesQueue.getJob(chargeJobId(payment._id));
    const state = job ? await job.getState() : 'missing';
    if (LIVE_JOB_STATES.has(state)) continue;
    if (job && (state === 'completed' || state === 'failed')) {
      await job.retry(state, { resetAttemptsMade: true, resetAttemptsStarted: true });
    } else {
      await enqueueCharge(deps.chargesQueue, { paymentId: payment._id, requestId: payment.requestId });
    }
    requeued += 1;
  }
  if (requeued > 0) deps.logger.info({ examined: stale.length, requeued }, 'outbox sweep re-enqueued stale payments');
  return { examined: stale.length, requeued };
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
        eventId: `evt-audit-purged-${companyId}-${throughSequence}`,
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
      throw new UnrecoverableError(`unknown maintenance job ${job.name}`);
  }
}

export function createMaintenanceWorker(
  deps: MaintenanceDeps & { connection: ConnectionOptions; prefix: string },
): Worker<MaintenanceJob, MaintenanceResult> {
  return new Worker<MaintenanceJob, MaintenanceResult>(
    QUEUE_NAMES.maintenance,
    (job) => processMaintenance(job, deps),
    {
      connection: deps.connection,
      prefix: deps.prefix,
      concurrency: 1,
    },
  );
}
