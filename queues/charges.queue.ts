import type { Queue } from 'bullmq';
import { z } from 'zod';
import { PAYMENT_ID } from '../domain/payment-request';
import { defaultJobOptions, jobId } from './job-options';

/** Ids only: the worker re-reads everything else from MongoDB, so no PHI or secret enters Redis. */
export const chargeJobSchema = z
  .object({
    paymentId: z.string().regex(PAYMENT_ID),
    requestId: z.string().min(1).max(100),
  })
  .strict();
export type ChargeJob = z.infer<typeof chargeJobSchema>;

export const CHARGE_JOB_NAME = 'charge';

// Roughly 2s, 4s, 8s … ~4 minutes over 8 attempts: long enough to ride out a Stripe blip.
export const chargeJobOptions = defaultJobOptions({ attempts: 8, backoffDelayMs: 2_000 });

export function chargeJobId(paymentId: string): string {
  return jobId('charge', paymentId);
}

export async function enqueueCharge(queue: Queue<ChargeJob>, job: ChargeJob): Promise<void> {
  const data = chargeJobSchema.parse(job);
  await queue.add(CHARGE_JOB_NAME, data, { ...chargeJobOptions, jobId: chargeJobId(data.paymentId) });
}
