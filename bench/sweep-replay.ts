import type { Queue } from 'bullmq';
import type { Collection, Document } from 'mongodb';
import { renewalJob } from '../queues/renewals.queue';

/**
 * The renewal sweep's data-bound work from plain clients: the due subscriptions through one driver cursor (the
 * product's query and projection, batches of 1,000), each company's k-th at rank k, and their renew jobs added with
 * `addBulk` in batches of 1,000. Answers how many were queued.
 */
export async function replaySweep(
  subscriptions: Collection<Document & { _id: string }>,
  queue: Queue,
): Promise<number> {
  const cursor = subscriptions.find(
    { nextBillingAt: { $lte: new Date() }, testClockId: { $exists: false } },
    { projection: { _id: 1, companyId: 1, currentPeriod: 1 }, batchSize: 1_000 },
  );
  const ranks = new Map<string, number>();
  let batch: ReturnType<typeof renewalJob>[] = [];
  let queued = 0;
  for await (const row of cursor) {
    const rank = (ranks.get(String(row.companyId)) ?? 0) + 1;
    ranks.set(String(row.companyId), rank);
    batch.push(renewalJob(row as never, rank));
    if (batch.length === 1_000) {
      await queue.addBulk(batch);
      queued += batch.length;
      batch = [];
    }
  }
  if (batch.length > 0) await queue.addBulk(batch);
  return queued + batch.length;
}
