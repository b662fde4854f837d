import type { Queue } from 'bullmq';
import type { Models } from '../../models';
import type { Logger } from '../../platform/logger';
import { renewalJob, type RenewalJob } from '../../queues/renewals.queue';

export interface SweepRenewalsDeps {
  models: Pick<Models, 'Subscription'>;
  renewalsQueue: Queue<RenewalJob>;
  logger: Logger;
  now?: () => Date;
  /** Jobs per `addBulk` call. */
  batchSize?: number;
  /** Due subscriptions read per company per round. */
  perCompany?: number;
}

export interface SweepRenewalsResult {
  companies: number;
  enqueued: number;
}

type DueRow = { _id: string; nextBillingAt: Date; currentPeriod: { start: Date } };

/**
 * Enqueues a renewal for every subscription due now (not on a test clock), fairly: it reads each company's due
 * subscriptions in pages by the (company, nextBillingAt) index and interleaves the companies one job at a time, so a
 * company with 100,000 renewals due cannot hold back another company's ten (BullMQ runs a queue in order, and its
 * groups are a paid feature). Memory is one page per company and one batch, whatever the number due. Job ids
 * (subscription, period start) collapse what an earlier sweep or a payment's outcome already queued.
 */
export async function sweepRenewals(deps: SweepRenewalsDeps): Promise<SweepRenewalsResult> {
  const now = deps.now?.() ?? new Date();
  const batchSize = deps.batchSize ?? 1_000;
  const perCompany = deps.perCompany ?? 200;
  const due = { nextBillingAt: { $lte: now }, testClockId: { $exists: false } };
  const companies: string[] = await deps.models.Subscription.distinct('companyId', due);

  const cursors = companies.map((companyId) => ({ companyId, after: undefined as DueRow | undefined, done: false }));
  let batch: ReturnType<typeof renewalJob>[] = [];
  let enqueued = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    await deps.renewalsQueue.addBulk(batch);
    enqueued += batch.length;
    batch = [];
  };

  while (cursors.some((cursor) => !cursor.done)) {
    const pages = await Promise.all(
      cursors.map(async (cursor) => {
        if (cursor.done) return [];
        const after = cursor.after;
        const page = await deps.models.Subscription.find(
          {
            companyId: cursor.companyId,
            ...due,
            ...(after
              ? {
                  $or: [
                    { nextBillingAt: { $gt: after.nextBillingAt, $lte: now } },
                    { nextBillingAt: after.nextBillingAt, _id: { $gt: after._id } },
                  ],
                }
              : {}),
          },
          { _id: 1, nextBillingAt: 1, currentPeriod: 1 },
        )
          .sort({ nextBillingAt: 1, _id: 1 })
          .limit(perCompany)
          .lean<DueRow[]>();
        cursor.after = page.at(-1);
        cursor.done = page.length < perCompany;
        return page;
      }),
    );
    // One job per company in turn.
    for (let i = 0; i < perCompany; i += 1) {
      for (const page of pages) {
        const row = page[i];
        if (!row) continue;
        batch.push(renewalJob(row));
        if (batch.length >= batchSize) await flush();
      }
    }
  }
  await flush();
  if (enqueued > 0)
    deps.logger.info({ companies: companies.length, enqueued }, 'renewal sweep queued due subscriptions');
  return { companies: companies.length, enqueued };
}
