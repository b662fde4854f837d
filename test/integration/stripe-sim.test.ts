/**
 * stripe-sim against the real stripe SDK and a running stripe-mock
 * (`npm test` starts it).
 */
import Stripe from 'stripe';
import { startStripeSim, type StripeSim } from '../../devtools/stripe-sim';
import { pollUntil } from '../../devtools/polling';
import { classifyStripeError, STRIPE_API_VERSION } from '../../gateway/stripe-gateway';

const upstreamUrl = process.env.STRIPE_API_BASE ?? 'http://127.0.0.1:12111';

let sim: StripeSim;
let stripe: Stripe;

function clientFor(target: StripeSim, extra: Partial<Stripe.StripeConfig> = {}): Stripe {
  return new Stripe('sk_test_sim', {
    apiVersion: STRIPE_API_VERSION,
    host: target.host,
    port: target.port,
    protocol: 'http',
    maxNetworkRetries: 0,
    ...extra,
  });
}

/** The rejection of `promise`, failing the test if it resolves. */
async function rejectionOf(promise: Promise<unknown>): Promise<Stripe.errors.StripeError> {
  try {
    await promise;
  } catch (error) {
    return error as Stripe.errors.StripeError;
  }
  throw new Error('expected the Stripe call to fail, but it succeeded');
}

const visaIntent = (metadata: Record<string, string> = {}): Stripe.PaymentIntentCreateParams => ({
  amount: 12_500,
  currency: 'usd',
  customer: 'cus_sim123',
  payment_method: 'pm_card_visa',
  metadata,
});

beforeAll(async () => {
  try {
    await fetch(`${upstreamUrl}/v1/balance`, {
      headers: { authorization: 'Bearer sk_test_probe' },
      signal: AbortSignal.timeout(2000),
    });
  } catch (error) {
    throw new Error(
      `stripe-mock is not reachable at ${upstreamUrl} (${String(error)}); run the tests with npm test, which starts it`,
    );
  }
  sim = await startStripeSim({ upstreamUrl, port: 0 });
  stripe = clientFor(sim);
});

afterAll(async () => {
  await sim?.close();
});

afterEach(() => sim.clearScripts());

describe('test-mode PaymentMethod outcomes', () => {
  it('create then confirm with pm_card_visa succeeds and echoes what was sent', async () => {
    const created = await stripe.paymentIntents.create(visaIntent({ payment_id: 'pay_001' }));
    expect(created).toMatchObject({
      status: 'requires_confirmation',
      amount: 12_500,
      currency: 'usd',
      customer: 'cus_sim123',
      payment_method: 'pm_card_visa',
      metadata: { payment_id: 'pay_001' },
      next_action: null,
    });

    const confirmed = await stripe.paymentIntents.confirm(created.id);
    expect(confirmed).toMatchObject({
      id: created.id,
      status: 'succeeded',
      amount_received: 12_500,
      metadata: { payment_id: 'pay_001' },
    });
    expect(confirmed.latest_charge).toMatch(/^ch_/);

    const retrieved = await stripe.paymentIntents.retrieve(created.id);
    expect(retrieved).toMatchObject({
      status: 'succeeded',
      latest_charge: confirmed.latest_charge,
    });
    expect(sim.succeededChargeCount(created.id)).toBe(1);

    const sent = sim.requests.find((request) => request.method === 'POST' && request.path === '/v1/payment_intents');
    expect(sent?.form).toMatchObject({
      amount: '12500',
      metadata: { payment_id: 'pay_001' },
    });
  });

  it('create without a payment method waits for one', async () => {
    const created = await stripe.paymentIntents.create({
      amount: 500,
      currency: 'usd',
    });
    expect(created.status).toBe('requires_payment_method');
  });

  it('a declined card throws StripeCardError carrying the PaymentIntent', async () => {
    const error = await rejectionOf(
      stripe.paymentIntents.create({
        ...visaIntent(),
        payment_method: 'pm_card_chargeDeclined',
        confirm: true,
      }),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error).toMatchObject({
      statusCode: 402,
      code: 'card_declined',
      decline_code: 'generic_decline',
      message: 'Your card was declined.',
    });
    expect(error.payment_intent?.status).toBe('requires_payment_method');
    const retrieved = await stripe.paymentIntents.retrieve(String(error.payment_intent?.id));
    expect(retrieved.last_payment_error?.decline_code).toBe('generic_decline');
  });

  it('insufficient funds and expired card have their own codes', async () => {
    const created = await stripe.paymentIntents.create({
      amount: 900,
      currency: 'usd',
    });
    const insufficient = await rejectionOf(
      stripe.paymentIntents.confirm(created.id, {
        payment_method: 'pm_card_visa_chargeDeclinedInsufficientFunds',
      }),
    );
    expect(insufficient).toMatchObject({
      decline_code: 'insufficient_funds',
      message: 'Your card has insufficient funds.',
    });
    const expired = await rejectionOf(
      stripe.paymentIntents.confirm(created.id, {
        payment_method: 'pm_card_chargeDeclinedExpiredCard',
      }),
    );
    expect(expired).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(expired.code).toBe('expired_card');
    // A later good card still works on the same PaymentIntent, as in Stripe.
    const retried = await stripe.paymentIntents.confirm(created.id, {
      payment_method: 'pm_card_mastercard',
    });
    expect(retried.status).toBe('succeeded');
  });

  it('a 3DS card requires action on session and is declined off session', async () => {
    const onSession = await stripe.paymentIntents.create({
      ...visaIntent(),
      payment_method: 'pm_card_threeDSecure2Required',
      confirm: true,
    });
    expect(onSession.status).toBe('requires_action');
    expect(onSession.next_action?.type).toBe('use_stripe_sdk');
    expect(onSession.client_secret).toMatch(new RegExp(`^${onSession.id}_secret_`));

    const offSession = await rejectionOf(
      stripe.paymentIntents.create({
        ...visaIntent(),
        payment_method: 'pm_card_authenticationRequired',
        confirm: true,
        off_session: true,
      }),
    );
    expect(offSession).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(offSession).toMatchObject({
      code: 'authentication_required',
      decline_code: 'authentication_required',
    });
  });

  it('a copy of a test card (another PaymentMethod of the same card, `<card>__<id>`) has its outcome', async () => {
    const declined = await rejectionOf(
      stripe.paymentIntents.create({
        ...visaIntent(),
        payment_method: 'pm_card_chargeDeclinedInsufficientFunds__saved2',
        confirm: true,
        off_session: true,
      }),
    );
    expect(declined).toMatchObject({ decline_code: 'insufficient_funds' });
    const offSession = await rejectionOf(
      stripe.paymentIntents.create({
        ...visaIntent(),
        payment_method: 'pm_card_authenticationRequired__saved2',
        confirm: true,
        off_session: true,
      }),
    );
    expect(offSession).toMatchObject({ decline_code: 'authentication_required' });
    const paid = await stripe.paymentIntents.create({
      ...visaIntent(),
      payment_method: 'pm_card_visa__saved2',
      confirm: true,
      off_session: true,
    });
    expect(paid.status).toBe('succeeded');
  });
});

describe('PaymentIntent state and idempotency', () => {
  it('the same idempotency key returns the same PaymentIntent, marked as replayed', async () => {
    const first = await stripe.paymentIntents.create(visaIntent(), {
      idempotencyKey: 'idem-create-1',
    });
    const second = await stripe.paymentIntents.create(visaIntent(), {
      idempotencyKey: 'idem-create-1',
    });
    expect(second.id).toBe(first.id);
    expect(first.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect(second.lastResponse.headers['idempotent-replayed']).toBe('true');

    await stripe.paymentIntents.confirm(first.id, {}, { idempotencyKey: 'idem-confirm-1' });
    const replayed = await stripe.paymentIntents.confirm(first.id, {}, { idempotencyKey: 'idem-confirm-1' });
    expect(replayed.status).toBe('succeeded');
    expect(sim.succeededChargeCount(first.id)).toBe(1);
  });

  it('reusing a key with different parameters is an idempotency error', async () => {
    await stripe.paymentIntents.create(visaIntent(), {
      idempotencyKey: 'idem-mismatch',
    });
    const error = await rejectionOf(
      stripe.paymentIntents.create({ ...visaIntent(), amount: 1 }, { idempotencyKey: 'idem-mismatch' }),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
  });

  it('confirming an already succeeded PaymentIntent fails with payment_intent_unexpected_state', async () => {
    const paymentIntent = await stripe.paymentIntents.create({
      ...visaIntent(),
      confirm: true,
    });
    expect(paymentIntent.status).toBe('succeeded');
    const error = await rejectionOf(stripe.paymentIntents.confirm(paymentIntent.id));
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(error.code).toBe('payment_intent_unexpected_state');
    expect(error.message).toMatch(/^You cannot confirm this PaymentIntent because it has already succeeded/);
    expect(error.payment_intent).toMatchObject({
      id: paymentIntent.id,
      status: 'succeeded',
    });
    expect(sim.succeededChargeCount(paymentIntent.id)).toBe(1);
  });

  it('an update is remembered and the PaymentIntent becomes confirmable', async () => {
    const created = await stripe.paymentIntents.create({
      amount: 700,
      currency: 'usd',
      metadata: { payment_id: 'p1' },
    });
    await stripe.paymentIntents.update(created.id, { payment_method: 'pm_card_amex', metadata: { office_id: 'o1' } });
    const retrieved = await stripe.paymentIntents.retrieve(created.id);
    expect(retrieved).toMatchObject({
      status: 'requires_confirmation',
      payment_method: 'pm_card_amex',
      metadata: { payment_id: 'p1', office_id: 'o1' },
    });
    await expect(stripe.paymentIntents.confirm(created.id)).resolves.toMatchObject({
      status: 'succeeded',
      amount: 700,
    });
  });
});

describe('scripted faults', () => {
  it('a scripted 500 fails once, then requests go through', async () => {
    sim.script({
      method: 'POST',
      path: '/v1/payment_intents',
      times: 1,
      status: 500,
    });
    const error = await rejectionOf(stripe.paymentIntents.create(visaIntent()));
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(error.statusCode).toBe(500);
    await expect(stripe.paymentIntents.create(visaIntent())).resolves.toMatchObject({
      status: 'requires_confirmation',
    });
  });

  it('a scripted 429 is a StripeRateLimitError', async () => {
    sim.script({ path: /^\/v1\/payment_intents/, status: 429 });
    const error = await rejectionOf(stripe.paymentIntents.create(visaIntent()));
    expect(error).toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    expect(error.code).toBe('rate_limit');
  });

  it('a delay beyond the client timeout is a StripeConnectionError, yet the request was processed', async () => {
    const impatient = clientFor(sim, { timeout: 150 });
    sim.script({ method: 'POST', path: '/v1/payment_intents', delayMs: 600 });
    const error = await rejectionOf(
      impatient.paymentIntents.create(visaIntent(), {
        idempotencyKey: 'idem-slow',
      }),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError);

    // While the first attempt is still being processed, Stripe refuses a second one with the same key:
    // a 409 idempotency_error (stripe-node 23 wraps every 409 in a StripeAPIError, whatever its type).
    const concurrent = await rejectionOf(stripe.paymentIntents.create(visaIntent(), { idempotencyKey: 'idem-slow' }));
    expect(concurrent).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(concurrent.rawType).toBe('idempotency_error');
    expect(concurrent.statusCode).toBe(409);
    expect(classifyStripeError(concurrent)).toMatchObject({
      kind: 'transient',
      code: 'idempotent_request_in_progress',
    });

    // Like Stripe after a client timeout: once the first attempt has finished, retrying with the same key replays it.
    const retried = await pollUntil(
      () =>
        stripe.paymentIntents.create(visaIntent(), { idempotencyKey: 'idem-slow' }).catch((error: unknown) => error),
      (result) => !(result instanceof Stripe.errors.StripeAPIError && result.statusCode === 409),
      { timeoutMs: 10_000, intervalMs: 100, what: 'the first attempt to finish' },
    );
    expect((retried as Stripe.Response<Stripe.PaymentIntent>).lastResponse.headers['idempotent-replayed']).toBe('true');
  });

  it('a dropped connection is a StripeConnectionError (the SDK silently retries the first drop)', async () => {
    // stripe-node retries ECONNRESET once even with maxNetworkRetries: 0, so drop twice.
    sim.script({ path: '/v1/payment_intents', destroySocket: true, times: 2 });
    const before = sim.requests.length;
    const error = await rejectionOf(stripe.paymentIntents.create(visaIntent({ payment_id: 'pay_drop' })));
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(sim.requests.length - before).toBe(2);
  });

  it('stripe-mock validation errors pass through unchanged', async () => {
    const error = await rejectionOf(
      stripe.paymentIntents.create({
        amount: 'twelve' as unknown as number,
        currency: 'usd',
      }),
    );
    expect(error).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect(error.statusCode).toBe(400);
    expect(error.message).toMatch(/amount/);
  });

  it('records every request so tests can check what left the process', async () => {
    sim.requests.length = 0;
    await stripe.paymentIntents.create(visaIntent({ payment_id: 'pay_log' }), {
      idempotencyKey: 'idem-log',
    });
    expect(sim.requests).toEqual([
      expect.objectContaining({
        method: 'POST',
        path: '/v1/payment_intents',
        idempotencyKey: 'idem-log',
        receivedAt: expect.any(Date),
      }),
    ]);
    // What a no-PHI assertion looks like: only these fields left the process.
    expect(Object.keys(sim.requests[0]?.form ?? {}).sort()).toEqual([
      'amount',
      'currency',
      'customer',
      'metadata',
      'payment_method',
    ]);
  });
});

describe('without stripe-mock', () => {
  it('answers 502 api_error when stripe-mock cannot be reached', async () => {
    // A port that was just free and is closed again: nothing listens there.
    const portProbe = await startStripeSim({ upstreamUrl, port: 0 });
    const deadUpstream = `http://127.0.0.1:${portProbe.port}`;
    await portProbe.close();
    const orphan = await startStripeSim({ upstreamUrl: deadUpstream, port: 0 });
    try {
      const error = await rejectionOf(clientFor(orphan).paymentIntents.create(visaIntent()));
      expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
      expect(error.statusCode).toBe(502);
    } finally {
      await orphan.close();
    }
  });

  it('refuses the real Stripe API as upstream', async () => {
    await expect(startStripeSim({ upstreamUrl: 'http://api.stripe.com' })).rejects.toThrow(/never the real Stripe API/);
  });
});
