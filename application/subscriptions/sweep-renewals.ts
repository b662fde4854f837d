import type { Queue } from 'bullmq';
import type { Models } from '../../models';
import type { Logger } from '../../platform/logger';
import { releaseFailedRenewals, renewalJob, type RenewalJob } from '../../queues/renewals.queue';

export interface SweepRenewalsDeps {
  models: Pick<Models, 'Subscription'>;
  renewalsQueue: Queue<RenewalJob>;
  logger: Logger;
  now?: () => Date;
  /** Jobs per `addBulk` call, and rows per cursor batch. */
  batchSize?: number;
}

export interface SweepRenewalsResult {
  companies: number;
  enqueued: number;
}

type DueRow = { _id: string; companyId: string; currentPeriod: { start: Date } };

/**
 * Enqueues a renewal for every subscription due now (not on a test clock), fairly: each company's k-th due
 * subscription is queued with priority k, so the queue runs every company's first renewal before any company's second
 * (BullMQ runs the lowest priority number first, and its groups are a paid feature). One company with 100,000
 * renewals due cannot hold back another company's ten, in this sweep or the next: the next sweep's first renewals of
 * another company (priority 1) run before the rest of a backlog queued earlier.
 *
 * One query, read through one cursor in batches and queued with `addBulk` a batch at a time: memory is one cursor
 * batch, one addBulk batch and a counter per company, whatever the number due. (A cursor per company, interleaved,
 * made FerretDB scan the due subscriptions once per company; keyset pages were quadratic there, as it cannot seek an
 * index for them.) Job ids (subscription, period start) collapse what an earlier sweep or a payment's outcome already
 * queued.
 */
export async function sweepRenewals(deps: SweepRenewalsDeps): Promise<SweepRenewalsResult> {
  const now = deps.now?.() ?? new Date();
  const batchSize = deps.batchSize ?? 1_000;
  const due = { nextBillingAt: { $lte: now }, testClockId: { $exists: false } };
  // How many renewals of each company this sweep queued (the next one's priority is one more).
  const queued = new Map<string, number>();

  let batch: ReturnType<typeof renewalJob>[] = [];
  let enqueued = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await releaseFailedRenewals(
      deps.renewalsQueue,
      batch.map((job) => job.opts.jobId),
    );
    await deps.renewalsQueue.addBulk(batch);
    enqueued += batch.length;
    batch = [];
  };

  // The driver's cursor: nothing is cast or hydrated per row (the rows are ids and a date).
  const cursor = deps.models.Subscription.collection.find<DueRow>(due, {
    projection: { _id: 1, companyId: 1, currentPeriod: 1 },
    batchSize,
  });
  try {
    for (let row = await cursor.next(); row; row = await cursor.next()) {
      const rank = (queued.get(row.companyId) ?? 0) + 1;
      queued.set(row.companyId, rank);
      batch.push(renewalJob(row, rank));
      if (batch.length >= batchSize) await flush();
    }
    await flush();
  } finally {
    await cursor.close();
  }
  if (enqueued > 0) deps.logger.info({ companies: queued.size, enqueued }, 'renewal sweep queued due subscriptions');
  return { companies: queued.size, enqueued };
}
