import { mintDevToken } from '../devtools/tokens';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { httpEntryResult, measureHttp } from './http-entry';
import type { BenchEntry, EntryResult } from './report';
import { createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown, type BenchWorld } from './support';
import { clientSettings, startBaselines, startLoadGenerator, startProduct } from './system';

/** A clinic with a Stripe key, and a billing clerk's token for its office `off_1`. */
export async function seedPayingCompany(world: BenchWorld): Promise<{ companyId: string; token: string }> {
  const db = await openDatabase(world.config);
  try {
    const companyId = await createCompany(db, {
      name: 'Bench Family Practice',
      stripeSecretKey: 'sk_test_benchStripeMock',
      compliance: devAttestation('bench'),
    });
    const token = await mintDevToken(world.config, { companyId, roles: ['billing_clerk'], officeIds: ['off_1'] });
    return { companyId, token };
  } finally {
    await db.close();
  }
}

export const PAYMENT_BODY = JSON.stringify({
  amount: 1_200,
  currency: 'usd',
  customer: 'cus_Bench01',
  paymentMethod: 'pm_card_visa',
  officeId: 'off_1',
});

/**
 * Ingress cost of POST /v1/companies/:id/payments in the api process alone
 * (authenticate a JWT, authorize, rate-limit, validate, seal the source, insert
 * the intent, enqueue the charge), no workers running. Baselines: the same
 * MongoDB command and Redis commands from plain clients behind a Fastify route;
 * the same with the token digested and the source sealed (`+crypto`); and a bare
 * Fastify route.
 *
 * BENCH_REQUESTS (2000), BENCH_CLIENT_CONCURRENCY (32), BENCH_HTTP_WARMUP (1000), BENCH_LIMIT_SECONDS (3),
 * BENCH_ROUNDS (2).
 */
export const requestsBench: BenchEntry = {
  name: 'requests',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const ops = positiveIntFromEnv('BENCH_REQUESTS', 2_000);
      const settings = clientSettings();
      const world = await createBenchWorld('requests', serviceAddresses(), {});
      teardown.defer('close the bench world', () => world.close());
      const { companyId, token } = await seedPayingCompany(world);

      const [api, baselines, cryptoBaselines, load] = await Promise.all([
        startProduct(world, teardown, 'api'),
        startBaselines(world, teardown, 'server'),
        startBaselines(world, teardown, 'server'),
        startLoadGenerator(teardown),
      ]);
      const json = { 'content-type': 'application/json' };
      const m = await measureHttp({
        load,
        settings,
        ops,
        variants: Array.from({ length: ops + settings.httpWarmup }, (_, i) => ({
          body: PAYMENT_BODY,
          headers: { 'idempotency-key': `bench-${world.suffix}-${i}` },
        })),
        product: {
          label: 'api',
          process: api,
          url: `${api.info.url}/v1/companies/${companyId}/payments`,
          headers: { ...json, authorization: `Bearer ${token}` },
          expectStatus: 202,
        },
        dataBound: {
          what: 'same MongoDB + Redis commands, plain clients',
          process: baselines,
          url: `${baselines.info.url}/data/payments/${companyId}`,
          headers: json,
          expectStatus: 202,
        },
        withCrypto: {
          what: 'the same, with the bearer token digested and the source sealed',
          process: cryptoBaselines,
          url: `${cryptoBaselines.info.url}/data+crypto/payments/${companyId}`,
          headers: { ...json, authorization: `Bearer ${token}` },
          expectStatus: 202,
        },
        limit: { what: 'bare Fastify route', url: `${baselines.info.url}/bare`, headers: json, expectStatus: 200 },
      });
      return httpEntryResult(
        {
          name: 'requests',
          summary: `POST payment, ${ops} requests, ${settings.connections} connections, api process alone`,
          unit: 'requests',
          ops,
        },
        m,
      );
    }),
};
