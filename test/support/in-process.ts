import { startApi, type RunningApi } from '../../api/main';
import { mintDevToken } from '../../cli/main';
import type { Role } from '../../domain/access-policy';
import { loadConfig } from '../../platform/config';
import { startWorkers, type RunningWorkers } from '../../workers/main';
import { startStripeSim, type StripeSim } from '../../devtools/stripe-sim';
import { createTestContext, type TestContext } from './harness';

export interface InProcessSystem {
  ctx: TestContext;
  sim: StripeSim;
  api: RunningApi;
  workers: RunningWorkers;
  url: string;
  token(companyId: string, roles?: Role[], extra?: { officeIds?: string[]; subject?: string }): Promise<string>;
  close(): Promise<void>;
}

/**
 * The api and workers in this process, on the real services, with Stripe reached
 * through the simulator (stripe-mock underneath) so tests can script declines and outages.
 */
export async function startInProcessSystem(
  name: string,
  extraEnv: Record<string, string> = {},
): Promise<InProcessSystem> {
  const sim = await startStripeSim({ upstreamUrl: process.env.STRIPE_API_BASE ?? '' });
  const ctx = await createTestContext(name, { PORT: '0', STRIPE_API_BASE: sim.url, ...extraEnv });
  const workers = await startWorkers(ctx.config, ctx.logger, ctx.db);
  const api = await startApi(ctx.config, ctx.logger, ctx.db);
  return {
    ctx,
    sim,
    api,
    workers,
    url: api.url,
    token: (companyId, roles = ['service'], extra = {}) =>
      mintDevToken(ctx.config, { companyId, roles, officeIds: extra.officeIds, subject: extra.subject }),
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
