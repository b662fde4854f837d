import { setTimeout as sleep } from 'node:timers/promises';
import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { insertSavedCard } from '../support/records';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';
import { DAY, type Card, type Policy, type SubscriptionModel } from './billing-model';

/**
 * Drives the real system (api + workers in this process, FerretDB, Redis, stripe-sim in front of stripe-mock) for the
 * model-based property, and reads back what it did: statuses, payments, refunds, disputes, invoices, periods and the
 * renewals queue.
 */

type Json = Record<string, any>;

export const POLICY: Policy = { retryDelaysDays: [1, 3, 5, 7], finalState: 'unpaid' };
const WEBHOOK_SECRET = 'whsec_ModelBasedBilling0001';

export const CARDS: Record<Card, string> = {
  visa: 'pm_card_visa',
  soft: 'pm_card_chargeDeclinedInsufficientFunds',
  hard: 'pm_card_chargeDeclinedExpiredCard',
  auth: 'pm_card_authenticationRequired',
};

export class Driver {
  /** Commands checked so far (each is settled once). */
  commands = 0;
  private jobsCache?: {
    at: number;
    jobs: Promise<Array<{ id?: string; name: string; data: Json; state: string; failedReason?: string }>>;
  };

  private constructor(
    readonly system: InProcessSystem,
    readonly companyId: string,
    private token: { value: string; at: number },
  ) {}

  /** The admin's bearer token, minted again every few minutes: the api refuses tokens older than 15 (a long run). */
  async bearer(): Promise<string> {
    if (Date.now() - this.token.at > TOKEN_REFRESH_MS) {
      const value = await this.system.token(this.companyId, ['company_admin'], { subject: 'usr-model-admin' });
      this.token = { value, at: Date.now() };
    }
    return this.token.value;
  }

  static async start(): Promise<Driver> {
    // Many histories poll one company's api at once: far above the default per-company rate limit.
    const system = await startInProcessSystem('billing_model', {
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_PER_SOURCE_PER_MINUTE: '1000000',
    });
    const companyId = await createCompany(system.ctx.db, { name: 'Model Family Practice' });
    const token = await system.token(companyId, ['company_admin'], { subject: 'usr-model-admin' });
    await configureStripeWebhooks(system, companyId, token, {
      secretKey: 'sk_test_51ModelBasedBilling01',
      webhookSigningSecrets: [WEBHOOK_SECRET],
    });
    const driver = new Driver(system, companyId, { value: token, at: Date.now() });
    const settings = await driver.api('PUT', '/billing-settings', { timeZone: 'UTC', dunning: POLICY });
    if (settings.status !== 200)
      throw new Error(`billing settings: ${settings.status} ${JSON.stringify(settings.body)}`);
    return driver;
  }

  close() {
    return this.system.close();
  }

  async api(method: string, path: string, body?: unknown) {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.bearer()}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (method === 'POST') headers['idempotency-key'] = `model-${ulid()}`;
    const response = await fetch(`${this.system.url}/v1/companies/${this.companyId}${path}`, {
      method,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : {}) as Json };
  }

  async must(method: string, path: string, body?: unknown) {
    const response = await this.api(method, path, body);
    if (response.status >= 300) {
      throw new Error(`${method} ${path} ${JSON.stringify(body)}: ${response.status} ${JSON.stringify(response.body)}`);
    }
    return response.body;
  }

  async plan(amount: number): Promise<string> {
    const plan = await this.must('POST', '/plans', {
      category: 'membership',
      name: `Plan ${amount}`,
      amount,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
    });
    return plan.id as string;
  }

  /**
   * A payer's saved card, as `setup_intent.succeeded` stores it: a PaymentMethod of its own each time (a copy of the
   * test card, as Stripe makes one per use), so a card saved again is a new card to the system, as to the model.
   */
  async savedCard(customerRef: string, card: Card): Promise<string> {
    return insertSavedCard(this.system.ctx.db, {
      companyId: this.companyId,
      customerRef,
      paymentMethod: `${CARDS[card]}__${ulid()}`,
      savedBy: `model-${ulid()}`,
    });
  }

  /** Delivers a lost dispute of the whole payment, as Stripe signs it. */
  async disputeLost(payment: { stripePaymentIntentId?: string; amount: number }) {
    const intentId = payment.stripePaymentIntentId!;
    const dispute = { id: `dp_${ulid()}`, intentId };
    for (const [type, status] of [
      ['charge.dispute.created', 'needs_response'],
      ['charge.dispute.closed', 'lost'],
    ] as const) {
      const event = stripeEventEnvelope(`evt_${ulid()}`, type, {
        id: dispute.id,
        object: 'dispute',
        amount: payment.amount,
        currency: 'usd',
        charge: `ch_${intentId.slice(3)}`,
        payment_intent: intentId,
        reason: 'general',
        status,
        created: Math.floor(Date.now() / 1000) - 60,
        evidence: { customer_name: null, uncategorized_text: null },
        is_charge_refundable: false,
        livemode: false,
        metadata: {},
      });
      const response = await deliverSigned(this.system.url, this.companyId, event, { secret: WEBHOOK_SECRET });
      if (response.status !== 200) throw new Error(`dispute webhook ${type}: ${response.status}`);
    }
  }

  /**
   * The renewals queue's live jobs, shared by all histories: a read under 300 ms old that started at `notBefore` or
   * later is reused (histories polling at once share one), an older one is not (it may predate a job the last
   * command queued).
   */
  renewalJobs(notBefore: number) {
    if (!this.jobsCache || this.jobsCache.at < notBefore || Date.now() - this.jobsCache.at > 300) {
      const queue = this.system.ctx.queues.renewals;
      const jobs = (async () => {
        const out: Array<{ id?: string; name: string; data: Json; state: string; failedReason?: string }> = [];
        for (const state of ['active', 'waiting', 'delayed', 'prioritized', 'failed'] as const) {
          for (const job of await queue.getJobs([state], 0, 5_000)) {
            if (job)
              out.push({ id: job.id, name: job.name, data: job.data as Json, state, failedReason: job.failedReason });
          }
        }
        return out;
      })();
      this.jobsCache = { at: Date.now(), jobs };
    }
    return this.jobsCache.jobs;
  }

  /** What the system holds for a history; `since`: when its last command returned (the jobs are read after it). */
  async observe(h: HistoryHandle, since = Date.now()): Promise<Observation> {
    const { models } = this.system.ctx.db;
    // The jobs first: a renewal that is no longer queued or running then has written its payment before the reads
    // below, so between them nothing the system is still doing goes unseen.
    const jobs = await this.renewalJobs(since);
    const [subscription, clock, payments, periods] = await Promise.all([
      this.api('GET', `/subscriptions/${h.subscriptionId}`).then((r) => r.body),
      models.TestClock.findById(h.clockId).lean(),
      models.Payment.find({ 'subscription.subscriptionId': h.subscriptionId }).sort({ createdAt: 1, _id: 1 }).lean(),
      models.SubscriptionPeriod.find({ subscriptionId: h.subscriptionId }).sort({ start: 1 }).lean(),
    ]);
    const paymentIds = payments.map((p) => p._id);
    const [refunds, documents] = await Promise.all([
      models.Refund.find({ paymentId: { $in: paymentIds } }).lean(),
      models.Invoice.find({ $or: [{ subscriptionId: h.subscriptionId }, { paymentId: { $in: paymentIds } }] }).lean(),
    ]);
    return {
      subscription,
      clock: clock as Json,
      payments: payments as Json[],
      periods: periods as Json[],
      refunds: refunds as Json[],
      documents: documents as Json[],
      jobs: jobs.filter((j) => j.data.subscriptionId === h.subscriptionId),
    };
  }

  /**
   * Polls until the system agrees with the model and has nothing in flight, or the deadline passes: then the
   * differences are the failure. No fixed sleeps: it returns as soon as the system has settled.
   */
  async settle(model: SubscriptionModel, h: HistoryHandle, timeoutMs = SETTLE_MS): Promise<Observation> {
    const since = Date.now();
    const deadline = since + timeoutMs;
    this.commands += 1;
    // Backs off from 100 ms to 1 s: many histories poll one FerretDB, and their reads must not starve the workers.
    let pause = 100;
    for (;;) {
      const observed = await this.observe(h, since);
      const problems = compare(model, observed);
      if (problems.length === 0) {
        h.last = observed;
        return observed;
      }
      if (Date.now() > deadline) {
        throw new Error(
          [
            `subscription ${h.subscriptionId} (clock ${h.clockId}) disagrees with the model:`,
            ...problems.map((p) => `  - ${p}`),
            `model log:`,
            ...model.log.map((l) => `    ${l}`),
            `system periods: ${JSON.stringify(observed.periods.map((p) => [p.kind ?? 'period', p.start, p.amount, p.status]))}`,
            `system payments: ${JSON.stringify(observed.payments.map((p) => [p.amount, p.status, p.failure?.code ?? '']))}`,
            `renewal jobs: ${JSON.stringify(observed.jobs.map((j) => [j.id, j.state, j.failedReason ?? '']))}`,
            `warnings: ${this.system.ctx.logs.lines
              .filter(
                (l) => (l.includes(h.subscriptionId) && !l.includes('incoming request')) || /"level":(40|50)/.test(l),
              )
              .slice(-12)
              .map((l) => l.slice(0, 400))
              .join('\n  ')}`,
          ].join('\n'),
        );
      }
      await sleep(pause);
      pause = Math.min(1_000, Math.round(pause * 1.5));
    }
  }
}

const TOKEN_REFRESH_MS = 5 * 60_000;

/** How long a command may take to settle (it returns as soon as the system agrees; only a disagreement waits it out). */
export const SETTLE_MS = Number(process.env.MODEL_SETTLE_MS ?? 60_000);

export interface HistoryHandle {
  customerRef: string;
  clockId: string;
  subscriptionId: string;
  now: number;
  last?: Observation;
}

export interface Observation {
  subscription: Json;
  clock: Json;
  payments: Json[];
  periods: Json[];
  refunds: Json[];
  documents: Json[];
  jobs: Array<{ id?: string; name: string; data: Json; state: string; failedReason?: string }>;
}

const IN_FLIGHT_PAYMENTS = ['queued', 'processing'];
const IN_FLIGHT_REFUNDS = ['queued', 'processing', 'pending'];

/** The succeeded payments in the order they were made: the model's charges, one for one. */
export const succeeded = (o: Observation) => o.payments.filter((p) => p.status === 'succeeded');

export function netCharged(o: Observation): number {
  let net = 0;
  for (const p of succeeded(o)) {
    net += p.amount;
    if (p.dispute?.status === 'lost') net -= p.dispute.amount;
  }
  for (const r of o.refunds) if (r.status === 'succeeded') net -= r.amount;
  return net;
}

/** Every difference between the model and the system, and every broken invariant; empty when they agree. */
export function compare(model: SubscriptionModel, o: Observation): string[] {
  const problems: string[] = [];
  if (o.clock?.status !== 'ready') problems.push(`test clock is ${o.clock?.status}`);
  const flying = o.payments.filter((p) => IN_FLIGHT_PAYMENTS.includes(p.status));
  if (flying.length) problems.push(`${flying.length} payment(s) still in flight`);
  if (o.refunds.some((r) => IN_FLIGHT_REFUNDS.includes(r.status))) problems.push('a refund is still in flight');
  // A renewal running or about to (even while the model is uncertain, the system must be at rest before the next command).
  const running = o.jobs.filter((j) => ['active', 'waiting', 'prioritized'].includes(j.state));
  if (running.length) problems.push(`${running.length} renewal job(s) running or about to`);

  if (!model.uncertain) {
    if (o.subscription.status !== model.status) {
      problems.push(`status: expected ${model.status}, system says ${o.subscription.status}`);
    }
    const net = netCharged(o);
    if (net !== model.netCharged) {
      problems.push(
        `charged: expected ${model.netCharged} (${model.charges.map((c) => `${c.label} ${c.amount}${c.refunded ? ` -${c.refunded}` : ''}${c.disputed ? ' disputed' : ''}`).join(', ')}), system ${net} (${succeeded(
          o,
        )
          .map((p) => p.amount)
          .join(', ')})`,
      );
    }
    const declined = o.payments.filter((p) => p.status === 'failed').length;
    if (declined !== model.declines) {
      problems.push(`declined attempts: expected ${model.declines}, system ${declined}`);
    }
    const lost = o.payments.filter((p) => p.dispute?.status === 'lost').length;
    const disputed = model.charges.filter((c) => c.disputed).length;
    if (lost !== disputed) problems.push(`lost disputes: expected ${disputed}, system ${lost}`);
  }

  // Each period is paid at most once.
  const byPeriod = new Map<string, number>();
  for (const p of succeeded(o)) {
    const key = p.subscription?.periodId as string;
    byPeriod.set(key, (byPeriod.get(key) ?? 0) + 1);
  }
  for (const [periodId, count] of byPeriod) if (count > 1) problems.push(`period ${periodId} paid ${count} times`);

  // Nothing charged for paused, canceled or trial time.
  const periods = new Map(o.periods.map((p) => [p._id as string, p]));
  for (const p of succeeded(o)) {
    const period = periods.get(p.subscription?.periodId);
    if (!period || period.kind === 'adjustment') continue;
    const start = new Date(period.start).getTime();
    const blocked = model.blocked.find(([from, to]) => start >= from && start < to);
    if (blocked) {
      problems.push(
        `charged ${p.amount} for a period starting ${new Date(start).toISOString()}, in time that bills nothing (from ${new Date(blocked[0]).toISOString()})`,
      );
    }
  }

  // Every successful charge is on exactly one paid invoice; every refund on exactly one credit note.
  const live = o.documents.filter((d) => d.status !== 'void' && d.status !== 'draft');
  for (const p of succeeded(o)) {
    const invoices = live.filter((d) => d.kind === 'invoice' && d.paymentId === p._id);
    if (invoices.length !== 1 || invoices[0]!.status !== 'paid') {
      problems.push(
        `payment ${p._id} (${p.amount}) is on ${invoices.map((d) => d.status).join('+') || 'no'} invoice(s)`,
      );
    }
  }
  for (const r of o.refunds.filter((r) => r.status === 'succeeded')) {
    const notes = live.filter((d) => d.kind === 'credit_note' && d.refundId === r._id);
    if (notes.length !== 1) problems.push(`refund ${r._id} (${r.amount}) is on ${notes.length} credit notes`);
  }
  for (const p of o.payments.filter((p) => p.dispute?.status === 'lost')) {
    const notes = live.filter((d) => d.kind === 'credit_note' && d.paymentId === p._id && !d.refundId);
    if (notes.length !== 1) problems.push(`lost dispute on payment ${p._id} is on ${notes.length} credit notes`);
  }
  // Invoice totals equal their lines; nothing negative.
  for (const d of o.documents) {
    const lines = (d.lines as Json[]).reduce((sum, l) => sum + l.amount, 0);
    if (d.total !== lines || d.subtotal !== lines) {
      problems.push(`${d.kind} ${d._id}: total ${d.total} (subtotal ${d.subtotal}) but its lines add up to ${lines}`);
    }
    if (d.total < 0 || (d.lines as Json[]).some((l) => l.amount < 0)) problems.push(`${d.kind} ${d._id} is negative`);
  }

  // Dunning ends within the policy window.
  const window = Math.max(...model.policy.retryDelaysDays) * DAY;
  const clockAt = new Date(o.clock?.frozenTime).getTime();
  for (const p of o.periods) {
    if (p.status === 'open' && p.firstFailureAt && clockAt > new Date(p.firstFailureAt).getTime() + window + 1000) {
      if (o.subscription.status === 'past_due') {
        problems.push(
          `period ${new Date(p.start).toISOString()} still in dunning ${((clockAt - new Date(p.firstFailureAt).getTime()) / DAY).toFixed(1)} days after its first failure`,
        );
      }
    }
  }

  // Nothing queued again and again for a subscription that can no longer bill.
  if (!model.canBill && !model.uncertain) {
    // A paused subscription that ends at period end wakes once more, to end then; one waiting for a new card after a
    // hard decline wakes once more when the policy's window ends, for its end state.
    const endsThen = model.status === 'paused' && model.cancelAtPeriodEnd;
    const windowEnd = model.waitingForCard && model.open ? model.open.firstFailureAt + window : undefined;
    const wakesForEndState =
      windowEnd !== undefined && new Date(o.subscription.nextBillingAt).getTime() <= windowEnd + 1000;
    if (o.subscription.nextBillingAt && !endsThen && !wakesForEndState) {
      problems.push(`${model.status} and cannot bill, but nextBillingAt is ${o.subscription.nextBillingAt}`);
    }
    const queued = o.jobs.filter((j) => j.state !== 'failed' && j.state !== 'active');
    if (queued.length) problems.push(`${model.status}, but ${queued.length} renewal job(s) queued for it`);
  }
  return problems;
}

export const hours = (ms: number) => {
  const d = Math.floor(ms / DAY);
  const h = Math.round((ms % DAY) / 3_600_000);
  return `${d ? `${d}d` : ''}${h ? `${h}h` : ''}` || `${ms}ms`;
};
