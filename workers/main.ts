import type { Worker } from 'bullmq';
import { openDatabase, type Database } from '../models';
import { loadConfig, type AppConfig } from '../platform/config';
import { createLogger, type Logger } from '../platform/logger';
import { createRedisConnection } from '../platform/redis';
import { exitOnStartupFailure, onShutdownSignal } from '../platform/shutdown';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { closeQueues, createQueues } from '../queues';
import { scheduleMaintenance } from '../queues/maintenance.queue';
import { loadAnchorSigner } from '../platform/anchor-key';
import { createAuditWorker } from './audit.worker';
import { createChargesWorker } from './charges.worker';
import { StripeGateway } from '../gateway/stripe-gateway';
import { createMaintenanceWorker } from './maintenance.worker';
import { createRefundsWorker } from './refunds.worker';
import { createStripeEventsWorker } from './stripe-events.worker';

export interface RunningWorkers {
  workers: Worker[];
  stop(): Promise<void>;
}

/** Composition root of the worker process: builds every dependency once and starts one worker per queue. */
export async function startWorkers(config: AppConfig, logger: Logger, database?: Database): Promise<RunningWorkers> {
  const db = database ?? (await openDatabase(config));
  const connection = createRedisConnection(config.redisUrl, 'worker');
  connection.on('error', (error: Error) => logger.warn({ reason: error.message }, 'redis unavailable'));
  const queues = createQueues(connection, config.queuePrefix);
  const enqueueAudit = (event: Parameters<typeof enqueueAuditEvent>[1]) => enqueueAuditEvent(queues.audit, event);
  const common = { connection, prefix: config.queuePrefix, logger };
  // One gateway for charges and refunds: it keeps one SDK client per secret key.
  const gateway = new StripeGateway({ endpoint: config.stripe.endpoint, timeoutMs: config.stripe.timeoutMs });

  const workers: Worker[] = [
    createChargesWorker({
      ...common,
      concurrency: config.workers.chargeConcurrency,
      models: db.models,
      encryption: db.encryption,
      gateway,
      enqueueAudit,
    }),
    createRefundsWorker({
      ...common,
      concurrency: config.workers.refundConcurrency,
      models: db.models,
      gateway,
      enqueueAudit,
    }),
    createAuditWorker({ ...common, concurrency: config.workers.auditConcurrency, auditTrail: db.auditTrail }),
    // Same order of work as a charge outcome (a few single-document reads and writes), so the same concurrency.
    createStripeEventsWorker({
      ...common,
      concurrency: config.workers.chargeConcurrency,
      models: db.models,
      encryption: db.encryption,
      enqueueAudit,
    }),
    createMaintenanceWorker({
      ...common,
      models: db.models,
      chargesQueue: queues.charges,
      stripeEventsQueue: queues['stripe-events'],
      refundsQueue: queues.refunds,
      auditQueue: queues.audit,
      auditTrail: db.auditTrail,
      anchorSigner: loadAnchorSigner(config.audit.anchorKeyFile, config.env !== 'production'),
      staleAfterMs: config.outbox.staleAfterMs,
      retentionDays: config.audit.retentionDays,
    }),
  ];
  for (const worker of workers) {
    worker.on('failed', (job, error) => {
      logger.warn(
        { queue: worker.name, jobId: job?.id, attempt: job?.attemptsMade, reason: error.message },
        'job attempt failed',
      );
    });
    worker.on('error', (error) => logger.error({ queue: worker.name, err: error }, 'worker error'));
  }
  await scheduleMaintenance(queues.maintenance, {
    'outbox-sweep': config.outbox.sweepEveryMs,
    'audit-anchor': config.audit.anchorEveryMs,
    'audit-retention': config.audit.retentionEveryMs,
  });
  logger.info({ queues: workers.map((w) => w.name) }, 'workers started');

  return {
    workers,
    async stop() {
      // Workers first: they finish their active jobs. Then queues, then the connections under them.
      await Promise.all(workers.map((worker) => worker.close()));
      await closeQueues(queues);
      await connection.quit();
      if (!database) await db.close();
    },
  };
}

if (require.main === module) {
  let logger: Logger | undefined;
  (async () => {
    const config = loadConfig();
    logger = createLogger({ level: config.logLevel, name: 'hipaa-billing-workers' });
    const running = await startWorkers(config, logger);
    onShutdownSignal(logger, config.shutdownDeadlineMs, running.stop);
  })().catch((error: unknown) => exitOnStartupFailure(logger, error));
}
