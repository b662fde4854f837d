import Fastify from 'fastify';
import { startApi } from '../api/main';
import { mintDevToken } from '../cli/main';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import type { BenchEntry, BenchResult } from './report';
import { createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown } from './support';
import { timeRequests, type TimedRequests } from './timed-requests';

/**
 * Ingress cost: requests per second and p99 of an authenticated (JWT), authorized
 * (policy + company/office scope), rate-limited, validated payment request that
 * writes its intent to MongoDB and enqueues two jobs, next to the same framework
 * answering a bare route in the same run. No workers run: only the request path is measured.
 *
 * BENCH_REQUESTS (1000), BENCH_CLIENT_CONCURRENCY (32).
 */
export const requestsBench: BenchEntry = {
  name: 'requests',
  unit: 'requests',
  run: () =>
    withTeardown(async (teardown): Promise<BenchResult> => {
      const count = positiveIntFromEnv('BENCH_REQUESTS', 1_000);
      const concurrency = positiveIntFromEnv('BENCH_CLIENT_CONCURRENCY', 32);
      const world = await createBenchWorld('requests', serviceAddresses(), {});
      teardown.defer('close the bench world', () => world.close());

      const bare = Fastify();
      bare.get('/bare', async () => ({ ok: true }));
      const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 });
      teardown.defer('stop the bare server', () => bare.close());

      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());
      const companyId = await createCompany(db, {
        name: 'Bench Ingress Clinic',
        stripeSecretKey: 'sk_test_benchStripeMock',
        compliance: devAttestation('bench'),
      });
      const api = await startApi(world.config, world.logger, db);
      teardown.defer('stop the api', () => api.stop());
      const token = await mintDevToken(world.config, { companyId, roles: ['billing_clerk'], officeIds: ['off_1'] });
      const body = JSON.stringify({
        amount: 1_200,
        currency: 'usd',
        customer: 'cus_Bench01',
        paymentMethod: 'pm_card_visa',
        officeId: 'off_1',
      });
      const post = (i: number) =>
        fetch(`${api.url}/v1/companies/${companyId}/payments`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'idempotency-key': `bench-${world.suffix}-${i}`,
          },
          body,
        });
      const get = () => fetch(`${bareUrl}/bare`);

      // Warm both up (JIT, connection pools), untimed.
      await timeRequests(50, concurrency, 202, (i) => post(count + i));
      await timeRequests(50, concurrency, 200, get);
      const bareRun = await timeRequests(count, concurrency, 200, get);
      const apiRun = await timeRequests(count, concurrency, 202, post);

      const ms = (run: TimedRequests) => `${run.p50Ms.toFixed(1)} ms / ${run.p99Ms.toFixed(1)} ms`;
      return {
        summary: `${count} requests each, client concurrency ${concurrency}`,
        throughput: [
          { label: 'POST payment (auth, RBAC, validate, insert, enqueue)', count, seconds: apiRun.seconds },
          { label: 'baseline: same framework, bare route', count, seconds: bareRun.seconds },
        ],
        metrics: [
          { label: 'POST p50 / p99', value: ms(apiRun) },
          { label: 'bare p50 / p99', value: ms(bareRun) },
          { label: 'ratio POST / bare', value: (bareRun.seconds / apiRun.seconds).toFixed(3) },
        ],
      };
    }),
};
