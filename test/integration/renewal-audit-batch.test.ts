import type { Job } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import { invoiceIdFor } from '../../domain/invoice-number';
import { createRenderPool, type RenderPool } from '../../documents/render-pool';
import { StripeGateway } from '../../gateway/stripe-gateway';
import { createCompany, devAttestation } from '../../models/companies';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import { invoiceJobId } from '../../queues/invoices.queue';
import { ALL_QUEUE_NAMES, QUEUE_NAMES } from '../../queues/names';
import { RENEWAL_JOBS, type RenewalJob } from '../../queues/renewals.queue';
import { renewalsDeps, type WorkerContext } from '../../workers/registry';
import { processRenewal, type RenewalsDeps } from '../../workers/renewals.worker';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertDueSubscription, RENEWAL_ACTIONS, trailOf } from '../support/records';

/**
 * Issue 22: a renew job's audit events, and those of the invoice it issues, go out in one batch per run (the paid
 * period, its invoice finalized and rendered: one ordered append, made by the job itself), each appended once whatever
 * is retried, in the order they happened; the charge a run starts is queued after the run's events.
 */
let system: InProcessSystem;
let companyId: string;

beforeAll(async () => {
  // Every queue but renewals: the test runs the renew jobs itself, and a charge's outcome queues its renew job (a
  // process serving renewals records it inside the charge's job instead: renewal-in-charge.test.ts).
  system = await startInProcessSystem(
    'renewal_audit_batch',
    {},
    ALL_QUEUE_NAMES.filter((name) => name !== QUEUE_NAMES.renewals),
  );
  companyId = await createCompany(system.ctx.db, {
    name: 'Hillside Dental',
    stripeSecretKey: 'sk_test_hillside',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  await system.close();
});

/**
 * The system's invoices queue is paused while a test looks at a render job before it runs. The queue, not the worker:
 * a worker already waiting for a job when it is paused may still take the next one.
 */
const invoices = () => system.ctx.queues.invoices;

const dueSubscription = (payer: string) => insertDueSubscription(system.ctx.db, { companyId, customerRef: payer });

/**
 * The renewals worker's dependencies as workers/registry.ts builds them, with the test's render pool; `tap` sees each
 * batch of audit events before the registry's sender records it (and, by throwing, stops it as a killed process would).
 */
function deps(
  renderPool: RenderPool,
  tap: (events: readonly AuditEventInput[]) => Promise<void> | void,
  onChargeQueued?: () => void,
): RenewalsDeps {
  const { ctx } = system;
  const context: WorkerContext = {
    config: ctx.config,
    logger: ctx.logger,
    db: ctx.db,
    connection: ctx.redis,
    queues: ctx.queues,
    gateway: new StripeGateway({ endpoint: ctx.config.stripe.endpoint, timeoutMs: ctx.config.stripe.timeoutMs }),
    enqueueAudit: (event) => enqueueAuditEvent(ctx.queues.audit, event),
    renderPool,
  };
  const built = renewalsDeps(context);
  return {
    ...built,
    sendAuditEvents: async (events) => {
      await tap(events);
      await built.sendAuditEvents!(events);
    },
    enqueueCharge: async (payment) => {
      await built.enqueueCharge(payment);
      onChargeQueued?.();
    },
  };
}

/** Records each batch of audit events (its actions, in order) on its way to the registry's sender. */
function recordingSink() {
  const batches: string[][] = [];
  const send = (events: readonly AuditEventInput[]) => {
    batches.push(events.map((event) => event.action));
  };
  return { batches, send };
}

const renewJob = (subscriptionId: string, attemptsMade = 0) =>
  ({
    id: `renewal-${subscriptionId}-${attemptsMade}`,
    name: RENEWAL_JOBS.renew,
    data: { subscriptionId },
    attemptsMade,
  }) as unknown as Job<RenewalJob>;

const run = (subscriptionId: string, renewalDeps: RenewalsDeps, attemptsMade = 0) =>
  processRenewal(renewJob(subscriptionId, attemptsMade), renewalDeps, { logger: system.ctx.logger });

/** The period's payment, once the system's charges worker has charged it. */
const chargedPayment = (subscriptionId: string) =>
  waitFor(
    () => system.ctx.db.models.Payment.findOne({ 'subscription.subscriptionId': subscriptionId }).lean(),
    (payment) => payment?.status === 'succeeded',
    { what: `the charge of ${subscriptionId}`, timeoutMs: 30_000 },
  );

describe("a renewal's audit events", () => {
  it('go in one batch per run, each appended once after a killed run, its retry and a redelivery, in order', async () => {
    const pool = createRenderPool({ threads: 1 });
    try {
      const { subscriptionId, periodKey } = await dueSubscription('payer-batch-01');
      const invoiceId = invoiceIdFor({ type: 'subscription_period', id: periodKey });

      // The run that opens the period sends no event: its payment records the attempt, whose charge sends its
      // event first in the charge's own batch.
      const opening = recordingSink();
      let batchesWhenCharged: string[][] | undefined;
      const opened = await run(
        subscriptionId,
        deps(pool, opening.send, () => (batchesWhenCharged = opening.batches.map((batch) => [...batch]))),
      );
      expect(opened).toEqual({ outcome: 'charging' });
      expect(opening.batches).toEqual([]);
      expect(batchesWhenCharged).toEqual([]);
      const payment = await chargedPayment(subscriptionId);

      // The run that records the paid period dies as it queues its events (before the period is recorded paid).
      let killed = 0;
      const dying = deps(pool, () => {
        killed += 1;
        return Promise.reject(new Error('process killed'));
      });
      await expect(run(subscriptionId, dying)).rejects.toThrow('process killed');
      expect(killed).toBeGreaterThan(0);
      expect(await system.ctx.db.models.SubscriptionPeriod.findById(periodKey).lean()).toMatchObject({
        status: 'open',
      });
      // Its invoice was issued and stored by the dying run: the retry finds it and sends its events again.
      expect(await system.ctx.db.models.Invoice.findById(invoiceId).lean()).toMatchObject({
        documentStatus: 'stored',
      });

      // Its retry: the paid period, its invoice finalized and rendered, in one job.
      const retry = recordingSink();
      expect(await run(subscriptionId, deps(pool, retry.send), 1)).toEqual({ outcome: 'settled' });
      expect(retry.batches).toEqual([['subscription.period_paid', 'invoice.finalized', 'invoice.rendered']]);
      // A redelivery of the completed job: nothing is due, nothing is sent.
      const again = recordingSink();
      expect(await run(subscriptionId, deps(pool, again.send), 2)).toEqual({ outcome: 'not_due' });
      expect(again.batches).toEqual([]);

      const stored = await trailOf(system.ctx, companyId, [subscriptionId, payment!._id, invoiceId]);
      // Each event once, in the order it happened; the run's batch as consecutive places of the chain.
      expect(stored.map((event) => event.action)).toEqual(RENEWAL_ACTIONS);
      const places = stored.map((event) => event.sequence);
      expect(places.slice(3)).toEqual([places[3], places[3]! + 1, places[3]! + 2]);
      // The money: one payment, the period paid once, one invoice for it.
      expect(await system.ctx.db.models.Payment.countDocuments({ 'subscription.subscriptionId': subscriptionId })).toBe(
        1,
      );
      expect(await system.ctx.db.models.SubscriptionPeriod.findById(periodKey).lean()).toMatchObject({
        status: 'paid',
        paymentId: payment!._id,
      });
      expect(await system.ctx.db.models.Invoice.find({ subscriptionId }).lean()).toEqual([
        expect.objectContaining({ _id: invoiceId, status: 'paid', total: 4_200, documentStatus: 'stored' }),
      ]);
    } finally {
      await pool.close();
    }
  });

  it('queue a failed render’s job after them, marked so that it does not send `finalized` again', async () => {
    const broken: RenderPool = {
      render: () => Promise.reject(new Error('render thread died')),
      threads: 0,
      close: () => Promise.resolve(),
    };
    await invoices().pause();
    const original = system.ctx.queues.invoices.add.bind(system.ctx.queues.invoices);
    let renderQueuedAfter: string[] | undefined;
    try {
      const { subscriptionId, periodKey } = await dueSubscription('payer-batch-02');
      const invoiceId = invoiceIdFor({ type: 'subscription_period', id: periodKey });
      expect(await run(subscriptionId, deps(broken, recordingSink().send))).toEqual({ outcome: 'charging' });
      await chargedPayment(subscriptionId);

      const sink = recordingSink();
      const spy = jest.spyOn(system.ctx.queues.invoices, 'add').mockImplementation(async (...args) => {
        renderQueuedAfter = sink.batches.flat();
        return original(...args);
      });
      try {
        expect(await run(subscriptionId, deps(broken, sink.send))).toEqual({ outcome: 'settled' });
      } finally {
        spy.mockRestore();
      }
      expect(sink.batches).toEqual([['subscription.period_paid', 'invoice.finalized']]);
      expect(renderQueuedAfter).toEqual(['subscription.period_paid', 'invoice.finalized']);
      const job = await system.ctx.queues.invoices.getJob(invoiceJobId(invoiceId));
      expect(job?.data).toEqual({ invoiceId, finalizedQueued: true });
    } finally {
      await invoices().resume();
    }
  });
});
