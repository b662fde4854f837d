import { type Job, type Worker } from 'bullmq';
import type { RefundStatus } from '../domain/refund-status';
import { sendRefund, type SendRefundDeps } from '../application/refunds/send-refund';
import { QUEUE_NAMES } from '../queues/names';
import { refundJobSchema, type RefundJob } from '../queues/refunds.queue';
import { createQueueWorker, JobFailedError, type JobContext, type QueueWorkerOptions } from './queue-worker';

export type RefundDeps = SendRefundDeps;

export interface RefundResult {
  refundId: string;
  status: RefundStatus;
}

/** A refund recorded failed (or canceled): retrying cannot change that. `code` is the refund's failure code. */
export class RefundFailedError extends JobFailedError {
  constructor(refundId: string, code: string) {
    super(code, `refund ${refundId} failed: ${code}`);
  }
}

/**
 * The refunds queue's processor: parses the job and hands it to `sendRefund`
 * (application/refunds). A refund recorded failed, or one that is not there,
 * ends the job for good; transient gateway errors are thrown for BullMQ to
 * retry with backoff.
 */
export async function processRefund(job: Job<RefundJob>, deps: RefundDeps, context: JobContext): Promise<RefundResult> {
  const parsed = refundJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid refund job payload');
  const { refundId } = parsed.data;
  // The wrapper's job logger already names the queue, job, attempt and request.
  const logger = context.logger.child({ refundId });

  const sent = await sendRefund({ ...deps, logger }, { refundId, ...(job.id ? { jobId: job.id } : {}) });
  switch (sent.outcome) {
    case 'recorded':
      return { refundId, status: sent.status };
    case 'failed':
      throw new RefundFailedError(refundId, sent.code);
    case 'needs_attention':
      // Failed in the queue (ops see it there, with the code); the reconciliation sweep asks the gateway later.
      throw new JobFailedError(sent.code, `refund ${refundId} needs attention: ${sent.code}`);
    case 'not_found':
      throw new JobFailedError('refund_not_found', `refund ${refundId} not found`);
    case 'disappeared':
      throw new JobFailedError('refund_not_found', `refund ${refundId} disappeared`);
  }
}

export function createRefundsWorker(deps: RefundDeps & QueueWorkerOptions): Worker<RefundJob, RefundResult> {
  return createQueueWorker(QUEUE_NAMES.refunds, processRefund, deps);
}
