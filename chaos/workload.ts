import Stripe from 'stripe';
import { setTimeout as sleep } from 'node:timers/promises';
import { ulid } from 'ulid';
import { isDuplicateKeyError } from '../models/errors';
import { savedPaymentMethodId } from '../models/saved-payment-method.model';
import type { SeededRandom } from './random';
import { WEBHOOK_SECRET, type ChaosSystem } from './system';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export type OperationKind =
  | 'payment'
  | 'payment_duplicate'
  | 'refund'
  | 'webhook'
  | 'webhook_replay'
  | 'subscription'
  | 'clock_advance'
  | 'card_change'
  | 'invoice_download';

export interface OperationCount {
  /** Requests sent (each counted once, however often it was retried). */
  sent: number;
  /** Answered 2xx: the system took it on. */
  accepted: number;
  /** Answered 4xx: refused as designed (a refund over what is left, a document not rendered yet). */
  refused: number;
  /** No answer before the client gave up (every retry met a fault). */
  gaveUp: number;
  /** The refusals by status and error code ("409 document_not_ready": 3). */
  refusals: Record<string, number>;
}

export const CARDS = {
  visa: 'pm_card_visa',
  declined: 'pm_card_chargeDeclined',
  threeDSecure: 'pm_card_threeDSecure2Required',
} as const;
export type CardKind = keyof typeof CARDS;

/** What the workload knows it asked for: the invariants hold the stores to it. */
export interface WorkloadRecord {
  operations: Record<OperationKind, OperationCount>;
  payments: Array<{ id: string; card: CardKind; amount: number }>;
  refunds: Array<{ id: string; paymentId: string; amount: number }>;
  /** 3-D Secure payments the payer finished at Stripe, and how; Stripe's webhooks told the system (some twice). */
  finishedActions: Array<{ paymentId: string; outcome: 'succeeded' | 'failed' }>;
  /** Each test clock and the time it was last (successfully) asked to advance to. */
  /** Each clock's last accepted time, and a later one asked by a request that got no answer (it may have been taken). */
  clocks: Map<string, { subscriptionId: string; frozenTime: string; unanswered?: string }>;
  downloads: { invoice: number; credit_note: number };
}

const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);
/** How long a client keeps retrying one request through faults before it gives up. */
const GIVE_UP_MS = 60_000;

/** Shuffled copy (Fisher–Yates) with the run's randomness. */
function shuffled<T>(items: T[], random: SeededRandom): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = random.int(0, i);
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

/**
 * The mixed, concurrent workload: each actor loops until `stop()`; every request goes to one of the apis (another
 * after a connection failure, as a load balancer would) and is retried with the same Idempotency-Key through faults.
 */
export class Workload {
  readonly record: WorkloadRecord = {
    operations: Object.fromEntries(
      (
        [
          'payment',
          'payment_duplicate',
          'refund',
          'webhook',
          'webhook_replay',
          'subscription',
          'clock_advance',
          'card_change',
          'invoice_download',
        ] as const
      ).map((kind) => [kind, { sent: 0, accepted: 0, refused: 0, gaveUp: 0, refusals: {} }]),
    ) as Record<OperationKind, OperationCount>,
    payments: [],
    refunds: [],
    finishedActions: [],
    clocks: new Map(),
    downloads: { invoice: 0, credit_note: 0 },
  };
  private stopping = false;
  private readonly actors: Array<Promise<void>> = [];
  private readonly refundCandidates: Array<{ id: string; amount: number }> = [];
  private readonly actionCandidates: string[] = [];
  /** Errors of the workload itself (not of the system): reported, and they fail the run. */
  readonly errors: string[] = [];

  constructor(
    private readonly system: ChaosSystem,
    private readonly random: SeededRandom,
  ) {}

  /** Between one actor's payments: the rate a 2-core machine's stores keep up with (audit appends are sequenced). */
  private pauseMs: [number, number] = [500, 2_500];

  start(concurrency: { payments: number; subscriptions: number; pauseMs?: [number, number] }): void {
    if (concurrency.pauseMs) this.pauseMs = concurrency.pauseMs;
    const run = (name: string, actor: (random: SeededRandom) => Promise<void>) => {
      const random = this.random.fork();
      this.actors.push(
        (async () => {
          while (!this.stopping) {
            try {
              await actor(random);
            } catch (error) {
              this.errors.push(`${name}: ${(error as Error).message}`);
              await sleep(500);
            }
          }
        })(),
      );
    };
    for (let i = 0; i < concurrency.payments; i += 1) run(`payments-${i + 1}`, (r) => this.payment(r));
    run('refunds', (r) => this.refundRace(r));
    run('3ds-webhooks', (r) => this.finishThreeDSecure(r));
    for (let i = 0; i < concurrency.subscriptions; i += 1) run(`subscriptions-${i + 1}`, (r) => this.subscription(r));
    run('invoice-downloads', (r) => this.download(r));
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.actors);
  }

  /** One request, retried through faults with the same Idempotency-Key; undefined when the client gave up. */
  async call(
    kind: OperationKind | undefined,
    method: string,
    path: string,
    body?: unknown,
    options: { idempotencyKey?: string; raw?: boolean; url?: string } = {},
  ): Promise<{ status: number; body: Json; bytes: number } | undefined> {
    const count = kind ? this.record.operations[kind] : undefined;
    if (count) count.sent += 1;
    const idempotencyKey = options.idempotencyKey ?? (method === 'POST' ? `chaos-${ulid()}` : undefined);
    const giveUpAt = Date.now() + GIVE_UP_MS;
    let pause = 200;
    for (let attempt = 0; ; attempt += 1) {
      const base = this.system.apiUrls[(attempt + this.random.int(0, 1)) % this.system.apiUrls.length]!;
      const url = options.url ?? `${base}/v1/companies/${this.system.companyId}${path}`;
      try {
        const headers: Record<string, string> = { authorization: `Bearer ${await this.system.bearer()}` };
        if (body !== undefined) headers['content-type'] = 'application/json';
        if (idempotencyKey) headers['idempotency-key'] = idempotencyKey;
        const response = await fetch(url, {
          method,
          headers,
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(15_000),
        });
        const buffer = Buffer.from(await response.arrayBuffer());
        if (!RETRYABLE.has(response.status)) {
          let parsed: Json = {};
          if ((!options.raw || response.status >= 300) && buffer.length > 0) {
            parsed = JSON.parse(buffer.toString('utf8')) as Json;
          }
          if (count && response.status < 300) count.accepted += 1;
          if (count && response.status >= 300) {
            count.refused += 1;
            const reason = `${response.status} ${String(parsed.error?.code ?? '')}`.trim();
            count.refusals[reason] = (count.refusals[reason] ?? 0) + 1;
          }
          return { status: response.status, body: parsed, bytes: buffer.length };
        }
      } catch {
        // connection refused or reset (a killed api), or no answer in time: try again, maybe the other api
      }
      if (Date.now() > giveUpAt) {
        if (count) count.gaveUp += 1;
        return undefined;
      }
      await sleep(pause);
      pause = Math.min(2_000, pause * 2);
    }
  }

  private async payment(random: SeededRandom): Promise<void> {
    const card = random.weighted<CardKind>({ visa: 6, declined: 2, threeDSecure: 2 });
    const amount = random.int(5, 200) * 100;
    const body = {
      amount,
      currency: 'usd',
      customer: `cus_Chaos${random.int(1, 50)}`,
      paymentMethod: CARDS[card],
      serviceCategory: 'copay',
    };
    const idempotencyKey = `chaos-pay-${ulid()}`;
    // Sometimes the client sends the same request twice at once (a double click, a retry that raced the first).
    const twice = random.chance(0.15);
    const answers = await Promise.all([
      this.call('payment', 'POST', '/payments', body, { idempotencyKey }),
      ...(twice ? [this.call('payment_duplicate', 'POST', '/payments', body, { idempotencyKey })] : []),
    ]);
    const ids = new Set(answers.filter((a) => a?.status === 202).map((a) => String(a!.body.id)));
    if (ids.size > 1) this.errors.push(`one Idempotency-Key answered two payments: ${[...ids].join(', ')}`);
    const id = [...ids][0];
    if (!id) return;
    this.record.payments.push({ id, card, amount });
    if (card === 'visa') this.refundCandidates.push({ id, amount });
    if (card === 'threeDSecure') this.actionCandidates.push(id);
    await sleep(random.int(this.pauseMs[0], this.pauseMs[1]));
  }

  /** Two or three partial refunds of one payment at once, together possibly more than it: some must be refused. */
  private async refundRace(random: SeededRandom): Promise<void> {
    const candidate = this.refundCandidates.shift();
    if (!candidate) return void (await sleep(300));
    const payment = await this.waitForPayment(candidate.id, ['succeeded', 'failed', 'needs_attention']);
    if (payment?.status !== 'succeeded') return;
    const racers = random.int(2, 3);
    const answers = await Promise.all(
      Array.from({ length: racers }, () => {
        const amount = Math.max(1, Math.round((candidate.amount * random.int(25, 60)) / 100));
        return this.call('refund', 'POST', `/payments/${candidate.id}/refunds`, {
          amount,
          reason: 'requested_by_customer',
        }).then((answer) => ({ answer, amount }));
      }),
    );
    for (const { answer, amount } of answers) {
      if (answer?.status === 202)
        this.record.refunds.push({ id: String(answer.body.id), paymentId: candidate.id, amount });
    }
  }

  /**
   * The payer finishes (or fails) 3-D Secure at Stripe; Stripe tells the system by webhook: the outcome's event twice
   * and an older requires_action event after it (out of order), in a shuffled order, and sometimes replayed by an
   * operator through the api.
   */
  private async finishThreeDSecure(random: SeededRandom): Promise<void> {
    const paymentId = this.actionCandidates.shift();
    if (!paymentId) return void (await sleep(300));
    const payment = await this.waitForPayment(paymentId, ['requires_action', 'failed', 'succeeded', 'needs_attention']);
    if (payment?.status !== 'requires_action') return;
    const stored = await this.system.withDatabase(() => this.system.db.models.Payment.findById(paymentId).lean());
    const intentId = stored?.stripePaymentIntentId;
    if (!intentId) return;
    const outcome = random.chance(0.7) ? 'succeeded' : 'failed';
    this.system.sim.finishAction(intentId, outcome);
    this.record.finishedActions.push({ paymentId, outcome });
    const object = (status: string) => ({
      id: intentId,
      object: 'payment_intent',
      status,
      amount: stored.amount,
      currency: 'usd',
      metadata: { payment_id: paymentId, company_id: this.system.companyId },
      ...(status === 'requires_payment_method'
        ? {
            last_payment_error: {
              type: 'card_error',
              code: 'payment_intent_authentication_failure',
              message: 'The provided PaymentMethod has failed authentication.',
            },
          }
        : {}),
      ...(status === 'requires_action' ? { next_action: { type: 'use_stripe_sdk' } } : {}),
    });
    const now = Math.floor(Date.now() / 1000);
    const finalType = outcome === 'succeeded' ? 'payment_intent.succeeded' : 'payment_intent.payment_failed';
    const finalEvent = envelope(
      `evt_chaos${ulid()}`,
      finalType,
      object(outcome === 'succeeded' ? 'succeeded' : 'requires_payment_method'),
      now,
    );
    const staleEvent = envelope(
      `evt_chaos${ulid()}`,
      'payment_intent.requires_action',
      object('requires_action'),
      now - 30,
    );
    for (const event of shuffled([finalEvent, finalEvent, staleEvent], random)) await this.deliver(event);
    if (random.chance(0.5)) {
      await this.call('webhook_replay', 'POST', `/webhook-events/${finalEvent.id}/replay`, { reason: 'chaos_replay' });
    }
  }

  /** Delivers a signed Stripe event; like Stripe, retries until it is answered 2xx. */
  private async deliver(event: Json): Promise<void> {
    const payload = JSON.stringify(event);
    const count = this.record.operations.webhook;
    count.sent += 1;
    const giveUpAt = Date.now() + GIVE_UP_MS;
    for (let attempt = 0; ; attempt += 1) {
      const base = this.system.apiUrls[attempt % this.system.apiUrls.length]!;
      const header = Stripe.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
      const status = await fetch(`${base}/v1/webhooks/stripe/${this.system.companyId}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': header },
        body: payload,
        signal: AbortSignal.timeout(15_000),
      })
        .then((r) => r.status)
        .catch(() => 0);
      if (status >= 200 && status < 300) return void (count.accepted += 1);
      if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        count.refused += 1;
        this.errors.push(`webhook ${String(event.type)} refused: ${status}`);
        return;
      }
      if (Date.now() > giveUpAt) return void (count.gaveUp += 1);
      await sleep(Math.min(2_000, 200 * 2 ** attempt));
    }
  }

  /**
   * A payer subscribes on a test clock; months pass; sometimes their card starts declining (dunning retries follow
   * on the clock) until they save a new card.
   */
  private async subscription(random: SeededRandom): Promise<void> {
    const customerRef = `payer-chaos-${ulid()}`;
    let at = Date.parse('2026-01-05T12:00:00Z');
    const clock = await this.call(undefined, 'POST', '/test-clocks', { frozenTime: new Date(at).toISOString() });
    const plan = await this.call(undefined, 'POST', '/plans', {
      category: 'membership',
      name: `Chaos plan ${random.int(1, 9)}`,
      amount: random.int(20, 90) * 100,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
    });
    if (clock?.status !== 201 || plan?.status !== 201) return void (await sleep(500));
    const clockId = String(clock.body.id);
    const subscribed = await this.call('subscription', 'POST', '/subscriptions', {
      planId: plan.body.id,
      customerRef,
      paymentMethodId: await this.savedCard(customerRef, 'pm_card_visa'),
      testClockId: clockId,
    });
    if (subscribed?.status !== 201) return void (await sleep(500));
    const subscriptionId = String(subscribed.body.id);
    this.record.clocks.set(clockId, { subscriptionId, frozenTime: new Date(at).toISOString() });
    const steps = random.int(3, 6);
    for (let step = 0; step < steps && !this.stopping; step += 1) {
      if (random.chance(0.25)) {
        const card = random.chance(0.5) ? 'pm_card_chargeDeclinedInsufficientFunds' : 'pm_card_visa';
        await this.call('card_change', 'PATCH', `/subscriptions/${subscriptionId}`, {
          paymentMethodId: await this.savedCard(customerRef, card),
        });
      }
      // A month, or a few days (the dunning retries' spacing).
      const step = random.chance(0.6) ? 31 * 86_400_000 : random.int(1, 4) * 86_400_000;
      at += step;
      const frozenTime = new Date(at).toISOString();
      const advanced = await this.call('clock_advance', 'POST', `/test-clocks/${clockId}/advance`, { frozenTime });
      if (advanced?.status !== 200 && advanced?.status !== 202) {
        // No answer at all (every retry met a fault): the system may have taken it, and finishes it if so.
        if (!advanced)
          this.record.clocks.set(clockId, {
            subscriptionId,
            frozenTime: new Date(at - step).toISOString(),
            unanswered: frozenTime,
          });
        break;
      }
      this.record.clocks.set(clockId, { subscriptionId, frozenTime });
      if (!(await this.clockReady(clockId))) break;
    }
  }

  private async clockReady(clockId: string): Promise<boolean> {
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline && !this.stopping) {
      const clock = await this.call(undefined, 'GET', `/test-clocks/${clockId}`);
      if (clock?.body.status === 'ready') return true;
      await sleep(300);
    }
    return false;
  }

  /** A payer's saved card, as `setup_intent.succeeded` stores it (its Stripe ids encrypted with the company's key). */
  private async savedCard(customerRef: string, paymentMethod: string): Promise<string> {
    const { db, companyId } = this.system;
    const id = savedPaymentMethodId(companyId, `seti_${ulid()}`);
    // Retried through a database fault; a create that was stored before its answer was lost is a duplicate key.
    await this.system.withDatabase(async () => {
      try {
        await db.models.SavedPaymentMethod.create({
          _id: id,
          companyId,
          customerRef,
          stripeCustomerId: await db.encryption.encrypt(companyId, `cus_${customerRef.replace(/[^A-Za-z0-9]/g, '')}`),
          stripePaymentMethodId: await db.encryption.encrypt(companyId, paymentMethod),
          usage: 'off_session',
          status: 'active',
          brand: 'visa',
          last4: '4242',
          expMonth: 12,
          expYear: 2030,
          savedBy: 'chaos-suite',
        });
      } catch (error) {
        if (!isDuplicateKeyError(error)) throw error;
      }
    });
    return id;
  }

  /** A document downloaded as a user would: the list, then one PDF. */
  private async download(random: SeededRandom): Promise<void> {
    await sleep(random.int(300, 1_200));
    const kind = random.chance(0.7) ? 'invoice' : 'credit_note';
    const path = kind === 'invoice' ? '/invoices' : '/credit-notes';
    const list = await this.call(undefined, 'GET', `${path}?limit=20`);
    const items = (list?.body.items ?? []) as Json[];
    if (items.length === 0) return;
    const document = random.pick(items);
    const pdf = await this.call('invoice_download', 'GET', `${path}/${String(document.id)}/pdf`, undefined, {
      raw: true,
    });
    if (pdf?.status === 200) this.record.downloads[kind] += 1;
  }

  private async waitForPayment(paymentId: string, statuses: string[]): Promise<Json | undefined> {
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const answer = await this.call(undefined, 'GET', `/payments/${paymentId}`);
      if (answer && statuses.includes(String(answer.body.status))) return answer.body;
      if (this.stopping) return undefined;
      await sleep(300);
    }
    return undefined;
  }
}

function envelope(id: string, type: string, object: Json, created: number): Json {
  return {
    id,
    object: 'event',
    api_version: '2025-08-27.basil',
    created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}
