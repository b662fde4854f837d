import type { Models } from '../../models';
import type { Queues } from '../../queues';
import type { Logger } from '../../platform/logger';
import { startMetricsServer } from '../../platform/metrics';
import { registerOperationalGauges } from './operational-gauges';

/**
 * The process's `/metrics` (Prometheus) on its own listener, with the operational gauges; undefined when
 * `METRICS_PORT` is 0. Entry points call it: `npm start` once for api and workers, `start:api` and `start:workers`
 * each on the port they are given.
 */
export async function serveMetrics(
  settings: { host: string; port: number },
  logger: Logger,
  deps: { queues: Queues; models: Pick<Models, 'Subscription' | 'Payment' | 'Refund'> },
): Promise<{ url: string; close(): Promise<void> } | undefined> {
  if (settings.port === 0) return undefined;
  registerOperationalGauges(deps);
  return startMetricsServer({ ...settings, logger });
}
