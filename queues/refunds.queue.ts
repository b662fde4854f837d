import type { Queue } from 'bullmq';
import { z } from 'zod';
import { REFUND_ID } from '../domain/refund-request';
import { defaultJobOptions, jobId } from './job-options';

/** Ids only: the worker re-reads the refund (and its payment) from MongoDB. */
export const refundJobSchema = z
  .object({
    refundId: z.string().regex(REFUND_ID),
    requestId: z.string().min(1).max(100),
  })
  .strict();
export type RefundJob = z.infer<typeof refundJobSchema>;

export const REFUND_JOB_NAME = 'refund';

// Like charges: roughly 2s, 4s, 8s … ~4 minutes over 8 attempts; after that the outbox sweep tries again.
export const refundJobOptions = defaultJobOptions({ attempts: 8, backoffDelayMs: 2_000 });

export function refundJobId(refundId: string): string {
  return jobId('refund', refundId);
}

export async function enqueueRefund(queue: Queue<RefundJob>, job: RefundJob): Promise<void> {
  const data = refundJobSchema.parse(job);
  await queue.add(REFUND_JOB_NAME, data, { ...refundJobOptions, jobId: refundJobId(data.refundId) });
}
