import { move } from 'piscina';
import type { InvoiceView } from '../domain/invoice';
import { renderInvoicePdf } from './invoice-pdf';

/**
 * Runs in a worker thread of the render pool (documents/render-pool.ts). The view arrives over the pool's MessagePort
 * (structured clone, in process memory; never Redis) and the PDF goes back as a transferred ArrayBuffer.
 */
export async function renderInvoicePdfTask(view: InvoiceView): Promise<Uint8Array> {
  const pdf = await renderInvoicePdf(view);
  // A copy with its own ArrayBuffer: a small Buffer is a slice of Node's shared pool, which must not be transferred.
  return move(new Uint8Array(pdf)) as Uint8Array;
}
