import { setTimeout as sleep } from 'node:timers/promises';
import { ALL_QUEUE_NAMES } from '../queues';
import type { ChaosSystem } from './system';
import { checkWebhookInvariants } from './webhook-invariants';
import type { Workload } from './workload';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface InvariantResult {
  name: string;
  ok: boolean;
  /** What was checked (so a pass is not vacuous). */
  checked: string;
  /** Each violation, precisely (ids, amounts). At most 20 are listed. */
  violations: string[];
}

const IN_FLIGHT_PAYMENT = ['queued', 'processing'];
const FINAL_REFUND = ['succeeded', 'failed', 'canceled'];
const OUTCOME_ACTION: Record<string, string> = {
  succeeded: 'payment.succeeded',
  failed: 'payment.failed',
  requires_action: 'payment.requires_action',
  needs_attention: 'payment.needs_attention',
};
const BUSY_STATES = ['active', 'waiting', 'prioritized', 'waiting-children'] as const;

/** Everything the invariants read, once, after the drain. */
interface Stores {
  payments: Json[];
  refunds: Json[];
  documents: Json[];
  periods: Json[];
  clocks: Json[];
  audit: Json[];
}

async function readStores(system: ChaosSystem): Promise<Stores> {
  const { models } = system.db;
  const companyId = system.companyId;
  const [payments, refunds, documents, periods, clocks, audit] = await Promise.all([
    models.Payment.find({ companyId }).lean(),
    models.Refund.find({ companyId }).lean(),
    models.Invoice.find({ companyId }).lean(),
    models.SubscriptionPeriod.find({ companyId }).lean(),
    models.TestClock.find({ companyId }).lean(),
    models.AuditEvent.find({ companyId }, { action: 1, resource: 1 }).lean(),
  ]);
  return { payments, refunds, documents, periods, clocks, audit } as unknown as Stores;
}

/** Jobs that should have finished: running or about to, or retrying after a failure. */
async function busyJobs(system: ChaosSystem): Promise<string[]> {
  const busy: string[] = [];
  for (const name of ALL_QUEUE_NAMES) {
    const queue = system.queues[name];
    for (const state of BUSY_STATES) {
      // The maintenance schedulers' runs (`repeat:` ids) come and go on their own: not work left behind.
      const jobs = (await queue.getJobs([state], 0, 1_000)).filter(
        (job) => job && !String(job.id).startsWith('repeat:'),
      );
      if (jobs.length > 0) busy.push(`${name}: ${jobs.length} ${state} (${jobs[0]!.id})`);
    }
    const retrying = (await queue.getJobs(['delayed'], 0, 1_000)).filter((job) => job && job.attemptsMade > 0);
    if (retrying.length > 0) busy.push(`${name}: ${retrying.length} delayed for a retry (${retrying[0]!.id})`);
  }
  return busy;
}

/**
 * Waits (up to `drainMs`) until nothing is in flight: payments and refunds settled, clocks ready, queues quiet, the
 * audit queue empty. Returns how long it took, or undefined when it did not drain (the invariants then say what).
 */
export async function drain(system: ChaosSystem, drainMs: number): Promise<number | undefined> {
  const from = Date.now();
  while (Date.now() - from < drainMs) {
    const stores = await system.withDatabase(() => readStores(system));
    const flying =
      stores.payments.some((p) => IN_FLIGHT_PAYMENT.includes(p.status)) ||
      stores.refunds.some((r) => !FINAL_REFUND.includes(r.status) && r.status !== 'needs_attention') ||
      stores.clocks.some((c) => c.status !== 'ready');
    if (!flying && (await busyJobs(system)).length === 0) return Date.now() - from;
    await sleep(1_000);
  }
  return undefined;
}

function result(name: string, checked: string, violations: string[]): InvariantResult {
  return { name, ok: violations.length === 0, checked, violations: violations.slice(0, 20) };
}

export async function checkInvariants(system: ChaosSystem, workload: Workload): Promise<InvariantResult[]> {
  // Read first: the audit chain's verification below records an audit event of its own (a job of the audit queue).
  const busy = await busyJobs(system);
  const stores = await system.withDatabase(() => readStores(system));
  const { record } = workload;
  const { sim, proxy } = system;
  const results: InvariantResult[] = [];
  const paymentsById = new Map(stores.payments.map((p) => [p._id as string, p]));
  const refundsById = new Map(stores.refunds.map((r) => [r._id as string, r]));
  const finished = new Map(record.finishedActions.map((f) => [f.paymentId, f.outcome]));
  const threeDSecure = new Set(record.payments.filter((p) => p.card === 'threeDSecure').map((p) => p.id));

  // 1. Every accepted request reached a final state.
  {
    const v: string[] = [];
    for (const { id } of record.payments) if (!paymentsById.has(id)) v.push(`accepted payment ${id} is not stored`);
    for (const { id } of record.refunds) if (!refundsById.has(id)) v.push(`accepted refund ${id} is not stored`);
    for (const p of stores.payments) {
      const waitsForPayer = p.status === 'requires_action' && threeDSecure.has(p._id) && !finished.has(p._id);
      if (!['succeeded', 'failed'].includes(p.status) && !waitsForPayer) {
        v.push(`payment ${p._id} (${p.subscription ? 'renewal' : 'one-off'}) ended ${p.status}`);
      }
      const expected = finished.get(p._id);
      if (expected && p.status !== expected) {
        v.push(`payment ${p._id}: the payer's 3-D Secure ${expected} at Stripe, the system says ${p.status}`);
      }
    }
    for (const r of stores.refunds) if (!FINAL_REFUND.includes(r.status)) v.push(`refund ${r._id} ended ${r.status}`);
    const clocks = new Map(stores.clocks.map((c) => [c._id as string, c]));
    for (const [clockId, asked] of record.clocks) {
      const clock = clocks.get(clockId);
      if (!clock) v.push(`test clock ${clockId} is not stored`);
      else if (clock.status !== 'ready') v.push(`test clock ${clockId} ended ${clock.status}`);
      else if (![asked.frozenTime, asked.unanswered].includes(new Date(clock.frozenTime).toISOString())) {
        v.push(`test clock ${clockId} at ${new Date(clock.frozenTime).toISOString()}, asked for ${asked.frozenTime}`);
      }
    }
    results.push(
      result(
        'every accepted request reached a final state',
        `${stores.payments.length} payments, ${stores.refunds.length} refunds, ${record.clocks.size} test clocks, ${record.finishedActions.length} 3-D Secure outcomes`,
        v,
      ),
    );
  }

  // Stripe's side: the PaymentIntents made for each payment (from the recording proxy), and what each charged.
  const intentsOf = new Map<string, Set<string>>();
  for (const request of proxy.requests) {
    if (!request.intentId || !request.paymentId) continue;
    const set = intentsOf.get(request.paymentId) ?? new Set<string>();
    set.add(request.intentId);
    intentsOf.set(request.paymentId, set);
  }
  const chargesAtStripe = (paymentId: string): number =>
    [...(intentsOf.get(paymentId) ?? [])].reduce((sum, intent) => sum + sim.succeededChargeCount(intent), 0);
  const refundedAtStripe = (paymentId: string): number =>
    [...(intentsOf.get(paymentId) ?? [])].reduce((sum, intent) => sum + sim.refundedAmount(intent), 0);

  // 2. No payment has two successful PaymentIntents; no period is paid twice.
  {
    const v: string[] = [];
    for (const [paymentId, intents] of intentsOf) {
      const charges = chargesAtStripe(paymentId);
      if (charges > 1)
        v.push(`payment ${paymentId}: ${charges} successful charges at Stripe over ${intents.size} PaymentIntent(s)`);
    }
    const paidPeriods = new Map<string, number>();
    for (const p of stores.payments) {
      const periodId = p.subscription?.periodId as string | undefined;
      if (!periodId) continue;
      const charged = Math.max(chargesAtStripe(p._id), p.status === 'succeeded' ? 1 : 0);
      paidPeriods.set(periodId, (paidPeriods.get(periodId) ?? 0) + charged);
    }
    for (const [periodId, times] of paidPeriods) if (times > 1) v.push(`period ${periodId} paid ${times} times`);
    results.push(
      result(
        'no payment has two successful PaymentIntents; no period is paid twice',
        `${intentsOf.size} payments' PaymentIntents at Stripe, ${paidPeriods.size} billed periods`,
        v,
      ),
    );
  }

  // 3. Refunds never exceed their payment.
  {
    const v: string[] = [];
    const ours = new Map<string, number>();
    for (const r of stores.refunds) {
      if (['failed', 'canceled'].includes(r.status)) continue;
      ours.set(r.paymentId, (ours.get(r.paymentId) ?? 0) + r.amount);
    }
    for (const p of stores.payments) {
      const recorded = ours.get(p._id) ?? 0;
      const atStripe = refundedAtStripe(p._id);
      if (recorded > p.amount) v.push(`payment ${p._id} (${p.amount}): refunds recorded ${recorded}`);
      if (atStripe > p.amount) v.push(`payment ${p._id} (${p.amount}): refunded at Stripe ${atStripe}`);
    }
    const raced = new Set(record.refunds.map((r) => r.paymentId)).size;
    results.push(
      result('refunds never exceed their payment', `${stores.refunds.length} refunds of ${raced} payments`, v),
    );
  }

  // 4. What Stripe charged (and refunded) equals what we recorded.
  {
    const v: string[] = [];
    let charged = 0;
    let recorded = 0;
    for (const p of stores.payments) {
      const charges = chargesAtStripe(p._id);
      charged += Math.min(charges, 1) * p.amount;
      if (p.status === 'succeeded') recorded += p.amount;
      if (charges > 0 !== (p.status === 'succeeded')) {
        v.push(`payment ${p._id} (${p.amount}): ${charges} charge(s) at Stripe, recorded ${p.status}`);
      }
      const refunded = stores.refunds
        .filter((r) => r.paymentId === p._id && r.status === 'succeeded')
        .reduce((sum, r) => sum + r.amount, 0);
      const refundedThere = refundedAtStripe(p._id);
      if (refunded !== refundedThere)
        v.push(`payment ${p._id}: refunded ${refundedThere} at Stripe, recorded ${refunded}`);
    }
    // Charges at Stripe for PaymentIntents of this company that no stored payment owns.
    for (const paymentId of intentsOf.keys()) {
      if (!paymentsById.has(paymentId) && chargesAtStripe(paymentId) > 0) {
        v.push(`Stripe charged for payment ${paymentId}, which is not stored`);
      }
    }
    results.push(
      result(
        'what Stripe charged equals what we recorded',
        `charged at Stripe ${charged}, recorded succeeded ${recorded} (cents)`,
        v,
      ),
    );
  }

  // 5. Invoices numbered without gaps, and matching the money.
  {
    const v: string[] = [];
    const live = stores.documents.filter((d) => d.status !== 'draft');
    for (const kind of ['invoice', 'credit_note']) {
      const sequences = live
        .filter((d) => d.kind === kind && typeof d.sequence === 'number')
        .map((d) => d.sequence as number)
        .sort((a, b) => a - b);
      sequences.forEach((sequence, index) => {
        if (sequence !== index + 1) v.push(`${kind} numbers: place ${index + 1} holds ${sequence}`);
      });
      const unnumbered = live.filter((d) => d.kind === kind && typeof d.sequence !== 'number');
      for (const d of unnumbered) v.push(`${kind} ${d._id} (${d.status}) has no number`);
    }
    const notVoid = live.filter((d) => d.status !== 'void');
    for (const p of stores.payments.filter((p) => p.status === 'succeeded' && !p.subscription)) {
      const invoices = notVoid.filter((d) => d.kind === 'invoice' && d.paymentId === p._id);
      if (invoices.length !== 1 || invoices[0]!.status !== 'paid' || invoices[0]!.total !== p.amount) {
        v.push(
          `payment ${p._id} (${p.amount}) is on ${invoices.map((d) => `${d.status} ${d.total}`).join(' + ') || 'no'} invoice(s)`,
        );
      }
    }
    for (const period of stores.periods.filter((p) => p.status === 'paid' && p.amount > 0)) {
      const found = notVoid.filter((d) => d.kind === 'invoice' && d.source?.id === period._id);
      if (found.length !== 1 || found[0]!.status !== 'paid') {
        v.push(`paid period ${period._id} (${period.amount}) is on ${found.length} paid invoice(s)`);
      }
    }
    for (const r of stores.refunds.filter((r) => r.status === 'succeeded')) {
      const notes = notVoid.filter((d) => d.kind === 'credit_note' && d.refundId === r._id);
      if (notes.length !== 1 || notes[0]!.total !== r.amount) {
        v.push(`refund ${r._id} (${r.amount}) is on ${notes.map((d) => d.total).join(' + ') || 'no'} credit note(s)`);
      }
    }
    for (const d of stores.documents) {
      const lines = (d.lines as Json[]).reduce((sum, l) => sum + (l.amount as number), 0);
      if (d.total !== lines) v.push(`${d.kind} ${d._id}: total ${d.total}, its lines ${lines}`);
    }
    const count = (kind: string) => live.filter((d) => d.kind === kind).length;
    results.push(
      result(
        'invoices are numbered without gaps and match the money',
        `${count('invoice')} invoices, ${count('credit_note')} credit notes`,
        v,
      ),
    );
  }

  // 6. The audit trail is complete for every action, and its chain verifies.
  {
    const v: string[] = [];
    const actions = new Map<string, Set<string>>();
    for (const event of stores.audit) {
      const key = `${event.resource?.type}|${event.resource?.id}`;
      const set = actions.get(key) ?? new Set<string>();
      set.add(event.action);
      actions.set(key, set);
    }
    const has = (type: string, id: string, action: string) => actions.get(`${type}|${id}`)?.has(action) ?? false;
    for (const p of stores.payments) {
      const expected = [
        ...(p.subscription ? [] : ['payment.requested']),
        ...(OUTCOME_ACTION[p.status] ? [OUTCOME_ACTION[p.status]!] : []),
      ];
      for (const action of expected) if (!has('payment', p._id, action)) v.push(`payment ${p._id}: no ${action}`);
    }
    for (const r of stores.refunds) {
      for (const action of [
        'refund.requested',
        ...(['succeeded', 'failed'].includes(r.status) ? [`refund.${r.status}`] : []),
      ]) {
        if (!has('refund', r._id, action)) v.push(`refund ${r._id}: no ${action}`);
      }
    }
    const downloaded = (kind: string) => stores.audit.filter((e) => e.action === `${kind}.downloaded`).length;
    for (const kind of ['invoice', 'credit_note'] as const) {
      if (downloaded(kind) < record.downloads[kind]) {
        v.push(
          `${record.downloads[kind]} ${kind} downloads answered 200, ${downloaded(kind)} ${kind}.downloaded events`,
        );
      }
    }
    const verify = await workload.call(undefined, 'GET', '/audit-events/verify');
    if (verify?.status !== 200 || verify.body.ok !== true) {
      v.push(
        `audit chain verify: ${verify?.status ?? 'no answer'} ${JSON.stringify(verify?.body.broken ?? verify?.body ?? {})}`,
      );
    }
    results.push(
      result(
        'the audit trail is complete for every action and its chain verifies',
        `${stores.audit.length} audit events; chain verified over ${verify?.body.checked ?? '?'} events`,
        v,
      ),
    );
  }

  // 7, 8. Outgoing webhooks: every listed event delivered and verified; each webhook-id accepted at most once.
  results.push(...(await checkWebhookInvariants(system, workload)));

  // 9. No job is left stuck.
  {
    results.push(result('no job is left stuck', `${ALL_QUEUE_NAMES.length} queues after the drain`, busy));
  }
  return results;
}
