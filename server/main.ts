import { startApi } from '../api/main';
import { openDatabase } from '../models';
import { startWorkers } from '../workers/main';
import { serveMetrics } from '../application/ops/serve-metrics';
import { loadConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';
import { exitOnStartupFailure, onShutdownSignal } from '../platform/shutdown';

/** The single-machine way to run it: api and workers in one process, sharing one database connection. */
async function main(): Promise<Logger> {
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel });
  const database = await openDatabase(config);
  const workers = await startWorkers(config, logger, database);
  const api = await startApi(config, logger, database);
  const metrics = await serveMetrics(config.metrics, 'server', logger, {
    queues: workers.queues,
    models: database.models,
  });
  onShutdownSignal(logger, config.shutdownDeadlineMs, async () => {
    await api.stop();
    await workers.stop();
    await metrics?.close();
    await database.close();
  });
  return logger;
}

main().catch((error: unknown) => exitOnStartupFailure(undefined, error));
