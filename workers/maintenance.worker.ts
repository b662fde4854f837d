import { UnrecoverableError, Worker, type ConnectionOptions, type Job, type Queue } from 'bullmq';
import type { Models } from '../models';
import type { Logger } from '../platform/logger';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../queues/charges.queue';
import { OUTBOX_SWEEP_JOB, type MaintenanceJob } from '../queues/maintenance.queue';
import { QUEUE_NAMES } from '../queues/names';

export interface MaintenanceDeps {
  models: Pick<Models, 'Payment'>;
  chargesQueue: Queue<ChargeJob>;
  logger: Logger;
  staleAfterMs: number;
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
export async function sweepOutbox(deps: MaintenanceDeps): Promise<SweepResult> {
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

export async function processMaintenance(job: Job<MaintenanceJob>, deps: MaintenanceDeps): Promise<SweepResult> {
  switch (job.name) {
    case OUTBOX_SWEEP_JOB:
      return sweepOutbox(deps);
    default:
      throw new UnrecoverableError(`unknown maintenance job ${job.name}`);
  }
}

export function createMaintenanceWorker(
  deps: MaintenanceDeps & { connection: ConnectionOptions; prefix: string },
): Worker<MaintenanceJob, SweepResult> {
  return new Worker<MaintenanceJob, SweepResult>(QUEUE_NAMES.maintenance, (job) => processMaintenance(job, deps), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: 1,
  });
}
