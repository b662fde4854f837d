import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { Queue } from 'bullmq';
import { idsOnly, shownJobName } from '../../domain/dashboard-view';
import { ALL_QUEUE_NAMES, type Queues } from '../../queues';

/**
 * Bull Board over every queue in queues/names.ts (a queue added there appears here without another line). Each
 * adapter's formatters show ids only, whatever a job holds; what formatters cannot reach (failure reasons, traces,
 * scheduler templates) is cut by the dashboard's preSerialization hook (domain/dashboard-view.ts).
 *
 * The adapters allow actions: one board serves both platform roles, and the read-only mode of `platform_ops` is
 * applied per request (its answers mark every queue read-only, and the server refuses its writes).
 */
export function createBoard(queues: Queues, basePath: string): FastifyAdapter {
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: ALL_QUEUE_NAMES.map((name) => boardQueue(queues[name] as Queue)),
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'hipaa-billing queues',
        hideDocsLink: true,
        hideRedisDetails: true,
        miscLinks: [{ text: 'Sign out', url: `${basePath}/sign-out` }],
      },
    },
  });
  return serverAdapter;
}

function boardQueue(queue: Queue): BullMQAdapter {
  const adapter = new BullMQAdapter(queue, { readOnlyMode: false, allowRetries: true });
  adapter.setFormatter('data', (data: unknown) => idsOnly(data));
  adapter.setFormatter('returnValue', (value: unknown) => idsOnly(value));
  adapter.setFormatter('progress', (progress: unknown) => idsOnly(progress));
  adapter.setFormatter('name', (job: { name?: unknown }) => shownJobName(job.name));
  return adapter;
}
