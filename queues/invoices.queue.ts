import type { Queue } from 'bullmq';
import { z } from 'zod';
import { CREDIT_NOTE_ID, INVOICE_ID } from '../domain/invoice-number';
import { defaultJobOptions, jobId } from './job-options';

/** Ids only: the worker reads, decrypts and minimizes in its own process; no PHI enters Redis. */
export const invoiceJobSchema = z
  .object({
    invoiceId: z
      .string()
      .refine((id) => INVOICE_ID.test(id) || CREDIT_NOTE_ID.test(id), 'an invoice or credit note id'),
    /** A later version of its document (paid later, voided): a job of its own, since the first one's id is taken. */
    version: z.number().int().min(2).max(99).optional(),
    /**
     * Queued by whoever issued the document, after its `finalized` event was queued: the render does not send it again
     * (without the mark, from the outbox sweep or an older version, it does, under the event's fixed id).
     */
    finalizedQueued: z.literal(true).optional(),
  })
  .strict();
export type InvoiceJob = z.infer<typeof invoiceJobSchema>;

export const INVOICE_JOB_NAME = 'render';

// Roughly 2s, 4s, 8s … over 6 attempts; after that the outbox sweep queues a document still not stored.
export const invoiceJobOptions = defaultJobOptions({ attempts: 6, backoffDelayMs: 2_000 });

export function invoiceJobId(invoiceId: string, version?: number): string {
  return version !== undefined && version > 1
    ? jobId('invoice', `${invoiceId}-v${version}`)
    : jobId('invoice', invoiceId);
}

export async function enqueueInvoiceRender(queue: Queue<InvoiceJob>, job: InvoiceJob): Promise<void> {
  const data = invoiceJobSchema.parse(job);
  await queue.add(INVOICE_JOB_NAME, data, { ...invoiceJobOptions, jobId: invoiceJobId(data.invoiceId, data.version) });
}
