import Stripe from 'stripe';
import { ulid } from '../platform/ids';
import { openDatabase } from '../models';
import { createCompany, devAttestation } from '../models/companies';
import { updatePaymentSettings } from '../models/payment-config';
import { httpEntryResult, measureHttp } from './http-entry';
import type { BenchEntry, EntryResult } from './report';
import { BENCH_WEBHOOK_SECRET, createBenchWorld, positiveIntFromEnv, serviceAddresses, withTeardown } from './support';
import { clientSettings, startBaselines, startLoadGenerator, startProduct } from './system';

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
  return { payload, signature: stripe.webhooks.generateTestHeaderString({ payload, secret: BENCH_WEBHOOK_SECRET }) };
}

/**
 * Webhook ingress cost: verified Stripe deliveries accepted per second and p99,
 * through the real receiver route in the api process (the configuration and its
 * signing secrets from the api's settings cache, signature check with the SDK on
 * the raw bytes, payload encrypted and inserted into the inbox, the event and its
 * audit receipt enqueued); no workers run. Every delivery is a distinct event,
 * signed before the clock starts (signing is Stripe's cost, not ours). Baselines,
 * with the same bodies: the same MongoDB and Redis commands (the company's cache
 * token, insert the event, two job adds) from plain clients; the same with the
 * signature checked, the payload encrypted and the source sealed (`+crypto`); and
 * a bare Fastify route.
 *
 * BENCH_WEBHOOKS (2000), BENCH_CLIENT_CONCURRENCY (32), BENCH_HTTP_WARMUP (1000), BENCH_LIMIT_SECONDS (3),
 * BENCH_ROUNDS (2).
 */
export const webhooksBench: BenchEntry = {
  name: 'webhooks',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const ops = positiveIntFromEnv('BENCH_WEBHOOKS', 2_000);
      const settings = clientSettings();
      const world = await createBenchWorld('webhooks', serviceAddresses(), {});
      teardown.defer('close the bench world', () => world.close());

      const db = await openDatabase(world.config);
      let companyId: string;
      try {
        companyId = await createCompany(db, {
          name: 'Bench Webhook Clinic',
          stripeSecretKey: 'sk_test_benchStripeMock',
          compliance: devAttestation('bench'),
        });
        await updatePaymentSettings(db, { companyId }, { webhookSigningSecrets: [BENCH_WEBHOOK_SECRET] }, 'bench');
      } finally {
        await db.close();
      }
      const [api, baselines, cryptoBaselines, load] = await Promise.all([
        startProduct(world, teardown, 'api'),
        startBaselines(world, teardown, 'server'),
        startBaselines(world, teardown, 'server'),
        startLoadGenerator(teardown),
      ]);

      const stripe = new Stripe('sk_test_unused');
      // Signed now: the 300 s tolerance is far longer than the run.
      const variants = Array.from({ length: ops + settings.httpWarmup }, () => {
        const { payload, signature } = signedDelivery(stripe, companyId);
        return { body: payload, headers: { 'stripe-signature': signature } };
      });
      const headers = { 'content-type': 'application/json; charset=utf-8' };
      const m = await measureHttp({
        load,
        settings,
        ops,
        variants,
        product: {
          label: 'api',
          process: api,
          url: `${api.info.url}/v1/webhooks/stripe/${companyId}`,
          headers,
          expectStatus: 200,
        },
        dataBound: {
          what: 'same MongoDB + Redis commands, plain clients',
          process: baselines,
          url: `${baselines.info.url}/data/webhooks/${companyId}`,
          headers,
          expectStatus: 200,
        },
        withCrypto: {
          what: "the same, with the SDK's signature check, the payload encrypted and the source sealed",
          process: cryptoBaselines,
          url: `${cryptoBaselines.info.url}/data+crypto/webhooks/${companyId}`,
          headers: headers,
          expectStatus: 200,
        },
        limit: {
          what: 'bare Fastify route, same bodies',
          url: `${baselines.info.url}/bare`,
          headers,
          expectStatus: 200,
        },
      });
      const stored = await world.rawMongo.db(world.dbName).collection('webhook_events').countDocuments();
      if (stored !== ops + settings.httpWarmup)
        throw new Error(`${stored} events in the inbox, ${ops + settings.httpWarmup} delivered`);
      return httpEntryResult(
        {
          name: 'webhooks',
          summary: `verified Stripe webhook, ${ops} distinct signed events, ${settings.connections} connections, api process alone`,
          unit: 'webhooks',
          ops,
        },
        m,
      );
    }),
};
