import { existsSync } from 'node:fs';
import path from 'node:path';
import { Piscina } from 'piscina';
import type { InvoiceView } from '../domain/invoice';

/**
 * Renders PDFs on worker threads, so a large document never blocks the event loop that renews other jobs' locks, and
 * PHI moves between threads over a MessagePort instead of through Redis. `threads` bounds how many render at once;
 * further requests wait in the pool's queue.
 */
export interface RenderPool {
  render(view: InvoiceView): Promise<Buffer>;
  /** Render threads running now: none once the pool has been idle for its idle timeout. */
  readonly threads: number;
  close(): Promise<void>;
}

const MAX_THREADS = 64;
const RENDER_YOUNG_GENERATION_MB = 8;
/** How long a render thread with nothing to render is kept before it exits. */
const RENDER_IDLE_TIMEOUT_MS = 60_000;

export function createRenderPool(options: { threads: number; idleTimeoutMs?: number }): RenderPool {
  const { threads, idleTimeoutMs = RENDER_IDLE_TIMEOUT_MS } = options;
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_THREADS) {
    throw new Error(`render pool threads must be an integer from 1 to ${MAX_THREADS}, got ${String(threads)}`);
  }
  const pool = new Piscina<InvoiceView, Uint8Array>({
    filename: renderWorkerFile(),
    name: 'renderInvoicePdfTask',
    // No thread is kept for a pool with nothing to render: a thread holds its own V8 heap and the parsed fonts (tens of
    // MB), and starting one again costs the next render a few hundred ms once (docs/performance-history.md, "the idle
    // render thread").
    minThreads: 0,
    maxThreads: threads,
    idleTimeout: idleTimeoutMs,
    // A render allocates a few MB that die with it; V8's default young generation for a thread (up to 48 MB) keeps
    // that much resident in every thread. 8 MB scavenges a little more often (docs/performance-history.md, "the
    // render thread's memory").
    resourceLimits: { maxYoungGenerationSizeMb: RENDER_YOUNG_GENERATION_MB },
  });
  return {
    async render(view) {
      const bytes = await pool.run(view);
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
    get threads() {
      return pool.threads.length;
    },
    async close() {
      await pool.close();
    },
  };
}

/**
 * Worker threads load plain JavaScript. Built, this module sits next to render-worker.js in dist/documents/. Run from
 * TypeScript source (ts-jest), it resolves the built copy, so the build (`npm run build`) must have run first.
 */
export function renderWorkerFile(): string {
  const besideThis = path.join(__dirname, 'render-worker.js');
  if (existsSync(besideThis)) return besideThis;
  const built = path.resolve(__dirname, '..', 'dist', 'documents', 'render-worker.js');
  if (existsSync(built)) return built;
  throw new Error(`render worker not found at ${besideThis} or ${built}: run \`npm run build\` first`);
}
