import { SettingsCache } from '../models/settings-cache';
import type { Worker } from 'bullmq';
import { StripeGateway } from '../gateway/stripe-gateway';
import { openDatabase, type Database } from '../models';
import { loadConfig, type AppConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';
import { createRedisConnection, warnUnlessNoEviction } from '../platform/redis';
import { serveMetrics } from '../application/ops/serve-metrics';
import { exitOnStartupFailure, onShutdownSignal } from '../platform/shutdown';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { closeQueues, createQueues, type Queues } from '../queues';
import { scheduleMaintenance } from '../queues/maintenance.queue';
import { RENEWAL_JOBS } from '../queues/renewals.queue';
import { QUEUE_NAMES } from '../queues/names';
import { parseWorkerArgs, selectQueues, WORKERS, type WorkerContext } from './registry';
import { createRenderPool } from '../documents/render-pool';

export interface RunningWorkers {
  workers: Worker[];
  queues: Queues;
  db: Database;
  stop(): Promise<void>;
}

export interface StartWorkersOptions {
  /** The queues this process serves (default: all). An unknown name refuses to start. */
  queues?: readonly string[];
}

/**
 * Composition root of the worker process: builds every dependency once and starts one worker per selected
 * queue from the registry (workers/registry.ts).
 */
export async function startWorkers(
  config: AppConfig,
  logger: Logger,
  database?: Database,
  options: StartWorkersOptions = {},
): Promise<RunningWorkers> {
  // Before anything connects: a typo in --queues must not start a process that serves nothing.
  const names = selectQueues(options.queues);
  const db = database ?? (await openDatabase(config));
  const connection = createRedisConnection(config.redisUrl, 'worker');
  connection.on('error', (error: Error) => logger.warn({ reason: error.message }, 'redis unavailable'));
  // Every queue exists, served here or not: processors enqueue onto others (audit, the outbox sweep's requeues).
  const queues = createQueues(connection, config.queuePrefix);
  void warnUnlessNoEviction(connection, logger);
  const context: WorkerContext = {
    config,
    logger,
    db,
    connection,
    queues,
    // One gateway for charges and refunds: it keeps one SDK client per secret key.
    gateway: new StripeGateway({ endpoint: config.stripe.endpoint, timeoutMs: config.stripe.timeoutMs }),
    enqueueAudit: (event) => enqueueAuditEvent(queues.audit, event),
    // Companies, offices, invoice and billing settings: cached per process, used while Redis' tokens say current.
    settings: new SettingsCache(db.models, db.documentTokens),
    servesRenewals: names.includes(QUEUE_NAMES.renewals),
    // PDF rendering on worker threads, only where invoices are served (INVOICE_RENDER_THREADS at most).
    ...(names.includes(QUEUE_NAMES.invoices)
      ? { renderPool: createRenderPool({ threads: config.workers.invoiceRenderThreads }) }
      : {}),
  };

  const workers: Worker[] = names.map((name) => WORKERS[name].start(context));
  for (const worker of workers) {
    // Job lifecycle lines (active, completed, failed with its reason code, stalled) come from workers/queue-worker.ts.
    worker.on('error', (error) => logger.error({ queue: worker.name, err: error }, 'worker error'));
  }
  if (names.includes(QUEUE_NAMES.maintenance)) {
    await scheduleMaintenance(queues.maintenance, {
      'outbox-sweep': config.outbox.sweepEveryMs,
      'audit-anchor': config.audit.anchorEveryMs,
      'audit-retention': config.audit.retentionEveryMs,
      'gateway-reconcile': config.reconcile.everyMs,
    });
  }
  if (names.includes(QUEUE_NAMES.renewals)) {
    await queues.renewals.upsertJobScheduler(
      RENEWAL_JOBS.sweep,
      { every: config.workers.renewalSweepEveryMs },
      {
        name: RENEWAL_JOBS.sweep,
        data: {},
        opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 1_000 } },
      },
    );
  }
  logger.info({ queues: workers.map((w) => w.name), fieldCrypto: db.encryption.cryptoProvider }, 'workers started');

  return {
    workers,
    queues,
    db,
    async stop() {
      // Workers first: they finish their active jobs. Then queues, then the connections under them.
      await Promise.all(workers.map((worker) => worker.close()));
      await context.renderPool?.close();
      await closeQueues(queues);
      await connection.quit();
      if (!database) await db.close();
    },
  };
}

if (require.main === module) {
  let logger: Logger | undefined;
  (async () => {
    // `npm run start:workers -- --queues charges,audit` serves a subset (renewals and rendering scale apart).
    const { queues } = parseWorkerArgs(process.argv.slice(2));
    const config = loadConfig();
    logger = createLogger({ level: config.logLevel, name: 'hipaa-billing-workers' });
    const running = await startWorkers(config, logger, undefined, { queues });
    const metrics = await serveMetrics(config.metrics, 'workers', logger, {
      queues: running.queues,
      models: running.db.models,
    });
    onShutdownSignal(logger, config.shutdownDeadlineMs, async () => {
      await running.stop();
      await metrics?.close();
    });
  })().catch((error: unknown) => exitOnStartupFailure(logger, error));
}
