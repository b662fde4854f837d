import { startApi, type RunningApi } from '../../api/main';
import { mintDevToken } from '../../devtools/tokens';
import type { Role } from '../../domain/access-policy';
import { loadConfig } from '../../platform/config';
import { startWorkers, type RunningWorkers } from '../../workers/main';
import { sweepOutbox, type SweepResult } from '../../application/outbox/sweep-outbox';
import { reconcileWithGateway, type ReconcileResult } from '../../application/reconcile/reconcile-gateway';
import { StripeGateway } from '../../gateway/stripe-gateway';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { startStripeSim, type StripeSim } from '../../devtools/stripe-sim';
import { createTestContext, type TestContext } from './harness';

export interface InProcessSystem {
  ctx: TestContext;
  sim: StripeSim;
  api: RunningApi;
  workers: RunningWorkers;
  url: string;
  token(companyId: string, roles?: Role[], extra?: { officeIds?: string[]; subject?: string }): Promise<string>;
  /**
   * Runs `run` against a second api on the same database whose Redis is unreachable: a payment or refund it records is
   * still accepted (the sweep queues it); a webhook delivery or replay it cannot queue is a 503.
   */
  withRedisDownApi<T>(run: (url: string) => Promise<T>): Promise<T>;
  /** One outbox sweep, as the maintenance scheduler runs it, with all unfinished work counted as stale. */
  sweepNow(): Promise<SweepResult>;
  /** One gateway reconciliation, as the maintenance scheduler runs it, asking about records older than `afterMs`. */
  reconcileNow(afterMs?: number): Promise<ReconcileResult>;
  close(): Promise<void>;
}

/**
 * The api and workers in this process, on the real services, with Stripe reached
 * through the simulator (stripe-mock underneath) so tests can script declines and outages.
 */
export async function startInProcessSystem(
  name: string,
  extraEnv: Record<string, string> = {},
  /** The queues the system's workers serve (`--queues`); every queue when not given. */
  workerQueues?: readonly string[],
): Promise<InProcessSystem> {
  const sim = await startStripeSim({ upstreamUrl: process.env.STRIPE_API_BASE ?? '' });
  const ctx = await createTestContext(name, { PORT: '0', STRIPE_API_BASE: sim.url, ...extraEnv });
  const workers = await startWorkers(ctx.config, ctx.logger, ctx.db, workerQueues ? { queues: workerQueues } : {});
  const api = await startApi(ctx.config, ctx.logger, ctx.db);
  return {
    ctx,
    sim,
    api,
    workers,
    url: api.url,
    token: (companyId, roles = ['service'], extra = {}) =>
      mintDevToken(ctx.config, { companyId, roles, officeIds: extra.officeIds, subject: extra.subject }),
    async withRedisDownApi(run) {
      const isolated = await startApi(
        configWith(ctx, { REDIS_URL: 'redis://127.0.0.1:1', PORT: '0' }),
        ctx.logger,
        ctx.db,
      );
      try {
        return await run(isolated.url);
      } finally {
        await isolated.stop();
      }
    },
    sweepNow: () =>
      sweepOutbox({
        models: ctx.db.models,
        chargesQueue: ctx.queues.charges,
        stripeEventsQueue: ctx.queues['stripe-events'],
        refundsQueue: ctx.queues.refunds,
        invoicesQueue: ctx.queues.invoices,
        renewalsQueue: ctx.queues.renewals,
        webhookDeliveries: {
          queue: ctx.queues['webhook-deliveries'],
          retryScheduleMs: ctx.config.webhooks.retryScheduleMs,
        },
        logger: ctx.logger,
        staleAfterMs: 0,
      }),
    reconcileNow: (afterMs = 0) =>
      reconcileWithGateway({
        models: ctx.db.models,
        gateway: new StripeGateway({ endpoint: ctx.config.stripe.endpoint, timeoutMs: ctx.config.stripe.timeoutMs }),
        encryption: ctx.db.encryption,
        enqueueAudit: (event) => enqueueAuditEvent(ctx.queues.audit, event),
        chargesQueue: ctx.queues.charges,
        refundsQueue: ctx.queues.refunds,
        logger: ctx.logger,
        afterMs,
      }),
    async close() {
      await api.stop();
      await workers.stop();
      await sim.close();
      await ctx.close();
    },
  };
}

export function configWith(ctx: TestContext, overrides: Record<string, string>) {
  return loadConfig({ ...ctx.env, ...overrides });
}
