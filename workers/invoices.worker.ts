import type { Job } from 'bullmq';
import { InvoiceViewError } from '../domain/invoice-view';
import { renderInvoiceDocument, type RenderInvoiceDeps } from '../application/invoices/render-invoice';
import { invoiceJobSchema, type InvoiceJob } from '../queues/invoices.queue';
import { invoicesRendered } from '../platform/metrics';
import { JobFailedError, type JobContext } from './queue-worker';

export type InvoicesDeps = Omit<RenderInvoiceDeps, 'logger'>;

export interface InvoiceResult {
  invoiceId: string;
  sha256: string;
  rendered: boolean;
}

/**
 * The invoices queue's processor: renders and stores one invoice or credit note (application/invoices). A document
 * that does not exist, whose company was shredded, or whose data cannot make a truthful document fails for good
 * with its reason; anything else (MongoDB, the key vault, a render thread) is retried.
 */
export async function processInvoice(job: Job<InvoiceJob>, deps: InvoicesDeps, context: JobContext) {
  const parsed = invoiceJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid invoice job payload');
  const { invoiceId, finalizedQueued } = parsed.data;
  const logger = context.logger.child({ invoiceId });
  let result;
  try {
    result = await renderInvoiceDocument({ ...deps, logger }, invoiceId, finalizedQueued ? { finalizedQueued } : {});
  } catch (error) {
    if (error instanceof InvoiceViewError) throw new JobFailedError('invoice_data_invalid', error.message);
    throw error;
  }
  switch (result.outcome) {
    case 'not_found':
      throw new JobFailedError('invoice_not_found', `invoice ${invoiceId} not found`);
    case 'company_shredded':
      throw new JobFailedError('company_shredded', `invoice ${invoiceId}: its company was shredded`);
    case 'stored':
      logger.info({ rendered: result.rendered, size: result.document.size }, 'invoice document stored');
      if (result.rendered) invoicesRendered.inc({ kind: result.kind });
      return { invoiceId, sha256: result.document.sha256, rendered: result.rendered } satisfies InvoiceResult;
  }
}
