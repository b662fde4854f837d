import type { Queue } from 'bullmq';
import type { Models } from '../../models';
import type { Logger } from '../../platform/logger';
import { releaseFailedRenewals, renewalJob, type RenewalJob } from '../../queues/renewals.queue';

export interface SweepRenewalsDeps {
  models: Pick<Models, 'Subscription'>;
  renewalsQueue: Queue<RenewalJob>;
  logger: Logger;
  now?: () => Date;
  /** Jobs per `addBulk` call. */
  batchSize?: number;
  /** Companies read at once (one cursor each). */
  companiesAtOnce?: number;
}

export interface SweepRenewalsResult {
  companies: number;
  enqueued: number;
}

type DueRow = { _id: string; currentPeriod: { start: Date } };

/**
 * Enqueues a renewal for every subscription due now (not on a test clock), fairly: it streams each company's due
 * subscriptions through a cursor of its own and interleaves the companies one job at a time, so a company with
 * 100,000 renewals due cannot hold back another company's ten (BullMQ runs a queue in order, and its groups are a paid
 * feature). Each company's k-th job is queued with priority k, so that fairness lasts beyond one sweep: the next
 * sweep's first renewals of another company run before the rest of a backlog queued earlier. At most
 * `companiesAtOnce` cursors are open; a company whose cursor ends makes room for the next. Memory is one cursor batch
 * per open company and one addBulk batch, whatever the number due; each cursor is one query, read in batches (no page
 * re-queries: FerretDB cannot seek an index for keyset pages). Job ids (subscription, period start) collapse what an
 * earlier sweep or a payment's outcome already queued.
 */
export async function sweepRenewals(deps: SweepRenewalsDeps): Promise<SweepRenewalsResult> {
  const now = deps.now?.() ?? new Date();
  const batchSize = deps.batchSize ?? 1_000;
  const companiesAtOnce = deps.companiesAtOnce ?? 50;
  const due = { nextBillingAt: { $lte: now }, testClockId: { $exists: false } };
  const companies: string[] = await deps.models.Subscription.distinct('companyId', due);

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

  let nextCompany = 0;
  // Each open company's cursor, and how many of its jobs this sweep queued (the next one's rank is one more).
  const open: Array<{ cursor: { next(): Promise<DueRow | null>; close(): Promise<unknown> }; queued: number }> = [];
  const fill = () => {
    while (open.length < companiesAtOnce && nextCompany < companies.length) {
      const companyId = companies[nextCompany++]!;
      const cursor = deps.models.Subscription.find({ companyId, ...due }, { _id: 1, currentPeriod: 1 })
        .lean<DueRow>()
        .cursor({ batchSize: Math.min(batchSize, 500) });
      open.push({ cursor, queued: 0 });
    }
  };
  fill();
  try {
    while (open.length > 0) {
      // One job per company in turn.
      for (let i = 0; i < open.length;) {
        const company = open[i]!;
        const row = await company.cursor.next();
        if (!row) {
          await open.splice(i, 1)[0]!.cursor.close();
          continue;
        }
        company.queued += 1;
        batch.push(renewalJob(row, company.queued));
        if (batch.length >= batchSize) await flush();
        i += 1;
      }
      fill();
    }
    await flush();
  } finally {
    await Promise.all(open.map((company) => company.cursor.close()));
  }
  if (enqueued > 0)
    deps.logger.info({ companies: companies.length, enqueued }, 'renewal sweep queued due subscriptions');
  return { companies: companies.length, enqueued };
}
