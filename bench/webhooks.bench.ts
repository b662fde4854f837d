import Fastify from 'fastify';
import Stripe from 'stripe';
import { ulid } from 'ulid';
import { startApi } from '../api/main';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { updatePaymentSettings } from '../models/payment-config';
import type { BenchEntry, BenchResult } from './report';
import { createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown } from './support';
import { timeRequests, type TimedRequests } from './timed-requests';

const WEBHOOK_SECRET = 'whsec_BenchWebhookSigningSecret01';
const WARMUP = 50;

/** A `payment_intent.succeeded` event as Stripe sends it (about 1.5 KB), each with its own id. */
function signedDelivery(stripe: Stripe, companyId: string): { payload: string; signature: string } {
  const id = ulid();
  const payload = JSON.stringify({
    id: `evt_${id}`,
    object: 'event',
    api_version: '2025-08-27.basil',
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: 'payment_intent.succeeded',
    data: {
      object: {
        id: `pi_${id}`,
        object: 'payment_intent',
        amount: 1_200,
        amount_received: 1_200,
        currency: 'usd',
        customer: 'cus_BenchPatientRef01',
        payment_method: 'pm_card_visa',
        payment_method_types: ['card'],
        status: 'succeeded',
        capture_method: 'automatic',
        confirmation_method: 'automatic',
        client_secret: `pi_${id}_secret_bench`,
        latest_charge: `ch_${id}`,
        created: Math.floor(Date.now() / 1000),
        metadata: { payment_id: `pay_${ulid()}`, company_id: companyId },
        next_action: null,
        last_payment_error: null,
        statement_descriptor_suffix: null,
      },
    },
  });
  return { payload, signature: stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET }) };
}

/**
 * Webhook ingress cost: verified Stripe deliveries accepted per second and p99,
 * through the real receiver route (signature check with the SDK on the raw
 * bytes, config and secrets read and decrypted, payload encrypted and inserted
 * into the inbox, the event and its audit receipt enqueued), next to the same
 * framework answering a bare route with the same bodies in the same run. No
 * workers run: only accepting is measured. Every delivery is a distinct event,
 * signed before the clock starts (signing is Stripe's cost, not ours).
 *
 * BENCH_WEBHOOKS (1000), BENCH_CLIENT_CONCURRENCY (32).
 */
export const webhooksBench: BenchEntry = {
  name: 'webhooks',
  unit: 'webhooks',
  run: () =>
    withTeardown(async (teardown): Promise<BenchResult> => {
      const count = positiveIntFromEnv('BENCH_WEBHOOKS', 1_000);
      const concurrency = positiveIntFromEnv('BENCH_CLIENT_CONCURRENCY', 32);
      const world = await createBenchWorld('webhooks', serviceAddresses(), {});
      teardown.defer('close the bench world', () => world.close());

      const bare = Fastify();
      bare.post('/bare', async () => ({ received: true }));
      const bareUrl = await bare.listen({ host: '127.0.0.1', port: 0 });
      teardown.defer('stop the bare server', () => bare.close());

      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());
      const companyId = await createCompany(db, {
        name: 'Bench Webhook Clinic',
        stripeSecretKey: 'sk_test_benchStripeMock',
        compliance: devAttestation('bench'),
      });
      await updatePaymentSettings(db, { companyId }, { webhookSigningSecrets: [WEBHOOK_SECRET] }, 'bench');
      const api = await startApi(world.config, world.logger, db);
      teardown.defer('stop the api', () => api.stop());

      const stripe = new Stripe('sk_test_unused');
      // Signed now: the 300 s tolerance is far longer than the run.
      const deliveries = Array.from({ length: count + WARMUP }, () => signedDelivery(stripe, companyId));
      const deliver = (url: string, i: number) => {
        const { payload, signature } = deliveries[i]!;
        return fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': signature },
          body: payload,
        });
      };
      const webhookUrl = `${api.url}/v1/webhooks/stripe/${companyId}`;
      const post = (i: number) => deliver(webhookUrl, i);
      const postBare = (i: number) => deliver(`${bareUrl}/bare`, i);

      // Warm both up (JIT, connection pools, the data key cache), untimed.
      await timeRequests(WARMUP, concurrency, 200, (i) => post(count + i));
      await timeRequests(WARMUP, concurrency, 200, (i) => postBare(count + i));
      const bareRun = await timeRequests(count, concurrency, 200, postBare);
      const apiRun = await timeRequests(count, concurrency, 200, post);
      const stored = await world.rawMongo.db(world.dbName).collection('webhook_events').countDocuments();

      const ms = (run: TimedRequests) => `${run.p50Ms.toFixed(1)} ms / ${run.p99Ms.toFixed(1)} ms`;
      return {
        summary: `${count} distinct signed events each, client concurrency ${concurrency}`,
        throughput: [
          { label: 'POST webhook (verify, encrypt, insert, enqueue)', count, seconds: apiRun.seconds },
          { label: 'baseline: same framework, bare route, same bodies', count, seconds: bareRun.seconds },
        ],
        metrics: [
          { label: 'webhook p50 / p99', value: ms(apiRun) },
          { label: 'bare p50 / p99', value: ms(bareRun) },
          { label: 'ratio webhook / bare', value: (bareRun.seconds / apiRun.seconds).toFixed(3) },
          { label: 'events in the inbox', value: `${stored} of ${count + WARMUP} delivered` },
        ],
      };
    }),
};
