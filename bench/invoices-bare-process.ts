/**
 * The invoices entry's limit: bare PDFKit rendering, in a process of its own. The product's render pool
 * (documents/render-pool.ts: piscina, INVOICE_RENDER_THREADS threads, each calling `renderInvoicePdf`) renders one
 * `InvoiceView` n times, `inFlight` at a time; no database, no Redis, no encryption, no hashing of what it renders.
 * It answers `reset` and `stats` like the other bench children (CPU of all its threads).
 */
import { createHash } from 'node:crypto';
import type { InvoiceView } from '../domain/invoice';
import { createRenderPool } from '../documents/render-pool';
import { loadConfig } from '../platform/config';
import { announceFailure, announceReady, serveParent } from './child';
import { installCommandCounters } from './instrument';
import { runBounded } from './support';

export interface BareRenderRequest {
  view: InvoiceView;
  n: number;
  inFlight: number;
}

export interface BareRenderResult {
  seconds: number;
  /** Of the first PDF rendered: the entry checks it is the product's page. */
  sha256: string;
  bytes: number;
}

async function main(): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  const pool = createRenderPool({ threads: config.workers.invoiceRenderThreads });
  serveParent(
    {
      reset: () => counters.reset(),
      stats: () => counters.stats(),
      render: async (payload) => {
        const { view, n, inFlight } = payload as BareRenderRequest;
        let first: Buffer | undefined;
        const startedAt = performance.now();
        await runBounded(n, inFlight, async () => {
          const pdf = await pool.render(view);
          first ??= pdf;
        });
        const seconds = (performance.now() - startedAt) / 1000;
        if (!first) throw new Error('nothing rendered');
        return {
          seconds,
          sha256: createHash('sha256').update(first).digest('hex'),
          bytes: first.length,
        } satisfies BareRenderResult;
      },
    },
    () => pool.close(),
  );
  announceReady({ pid: process.pid });
}

if (require.main === module) main().catch(announceFailure);
