import type { Models } from '../../models';
import type { Queues } from '../../queues';
import type { AppConfig } from '../../platform/config';
import type { Logger } from '../../platform/logger';
import { startMetricsServer } from '../../platform/metrics';
import { registerOperationalGauges } from './operational-gauges';

/**
 * Each process kind listens on a metrics port of its own by default, so `npm run start:workers` and
 * `npm run start:api` run side by side on one host. More than one of a kind on a host: METRICS_PORT=0 (a free port,
 * logged) or a port each.
 */
export const DEFAULT_METRICS_PORTS = { server: 9464, api: 9465, workers: 9466 } as const;

export type ProcessKind = keyof typeof DEFAULT_METRICS_PORTS;

const WHAT: Record<ProcessKind, string> = {
  server: "the api and workers' metrics",
  api: "the api's metrics",
  workers: "the workers' metrics",
};

/**
 * The process's `/metrics` (Prometheus) on its own listener, with the operational gauges; undefined when
 * `METRICS_PORT` is off. Entry points call it: `npm start` once for api and workers, `start:api` and `start:workers`
 * each with their own kind.
 */
export async function serveMetrics(
  settings: AppConfig['metrics'],
  kind: ProcessKind,
  logger: Logger,
  deps: { queues: Queues; models: Pick<Models, 'Subscription' | 'Payment' | 'Refund'> },
): Promise<{ url: string; close(): Promise<void> } | undefined> {
  if (settings.port === 'off') return undefined;
  registerOperationalGauges({ ...deps, cacheMs: settings.gaugeCacheMs });
  return startMetricsServer({
    host: settings.host,
    port: settings.port ?? DEFAULT_METRICS_PORTS[kind],
    bearerToken: settings.bearerToken,
    what: WHAT[kind],
    setting: 'METRICS_PORT',
    logger,
  });
}
