import { invoiceIdFor } from '../../domain/invoice-number';
import { createCompany, devAttestation } from '../../models/companies';
import { AUDIT_BATCH_JOB_NAME, type AuditBatchJob, type AuditEvent } from '../../queues/audit.queue';
import { jobId } from '../../queues/job-options';
import { RENEWAL_JOBS } from '../../queues/renewals.queue';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertDueSubscription, RENEWAL_ACTIONS, trailOf } from '../support/records';

/**
 * Issue 22: in a workers process that serves the renewals queue, a subscription's payment outcome is recorded on its
 * period inside the charge's job (workers/registry.ts `afterPaymentOutcome`): no renew job for it, and the charge's
 * events and the paid period's (its invoice's with them) go out in one audit job; each once, in order, whatever fails.
 */
let system: InProcessSystem;
let companyId: string;

beforeAll(async () => {
  system = await startInProcessSystem('renewal_in_charge');
  companyId = await createCompany(system.ctx.db, {
    name: 'Riverbend Physical Therapy',
    stripeSecretKey: 'sk_test_riverbend',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  await system.close();
});

/** Renews the due subscription through the system's queue, as the sweep does; its period once paid, and its payment. */
async function renewUntilPaid(subscriptionId: string, periodKey: string) {
  await system.workers.queues.renewals.add(RENEWAL_JOBS.renew, { subscriptionId });
  const period = await waitFor(
    () => system.ctx.db.models.SubscriptionPeriod.findById(periodKey).lean(),
    (found) => found?.status === 'paid',
    { what: `the period ${periodKey} paid`, timeoutMs: 30_000 },
  );
  const payment = await system.ctx.db.models.Payment.findById(period!.paymentId).lean();
  return { period: period!, payment: payment! };
}

/**
 * Records the actions of every batch of audit events the system's workers append (in a job, or the audit worker's) and
 * of every audit job they queue, and the ids of the renew jobs they queue. `refuseNth` (from 1): that append is refused
 * as by a MongoDB outage, and so is the next audit job's add unless `queueTakes` (Redis too).
 */
function recordSent(refuseNth?: number, queueTakes = false) {
  const { audit, renewals } = system.workers.queues;
  const trail = system.ctx.db.auditTrail;
  const appendMany = trail.appendMany.bind(trail);
  const addAudit = audit.add.bind(audit);
  const addRenewal = renewals.add.bind(renewals);
  const batches: string[][] = [];
  const queued: string[][] = [];
  const renewJobs: string[] = [];
  let appends = 0;
  let refuseAdd = false;
  const spies = [
    jest.spyOn(trail, 'appendMany').mockImplementation(async (id, events, recordedAt) => {
      appends += 1;
      if (appends === refuseNth) {
        refuseAdd = !queueTakes;
        throw new Error('connection refused');
      }
      batches.push(events.map((event) => event.action));
      return appendMany(id, events, recordedAt);
    }),
    jest.spyOn(audit, 'add').mockImplementation(async (name, data, options) => {
      if (refuseAdd) {
        refuseAdd = false;
        throw new Error('Connection is closed.');
      }
      queued.push(
        name === AUDIT_BATCH_JOB_NAME
          ? (data as AuditBatchJob).events.map((event) => event.action)
          : [(data as AuditEvent).action],
      );
      return addAudit(name, data, options);
    }),
    jest.spyOn(renewals, 'add').mockImplementation(async (name, data, options) => {
      if (options?.jobId) renewJobs.push(options.jobId);
      return addRenewal(name, data, options);
    }),
  ];
  return { batches, queued, renewJobs, restore: () => spies.forEach((spy) => spy.mockRestore()) };
}

/** The id of the renew job a payment's outcome queues (queues/renewals.queue.ts `renewAfterPayment`). */
const renewJobAfter = (subscriptionId: string, paymentId: string) =>
  jobId('renewal', `${subscriptionId}-${paymentId}-succeeded`);

async function expectSettledOnce(subscriptionId: string, periodKey: string, paymentId: string) {
  expect(await system.ctx.db.models.Payment.countDocuments({ 'subscription.subscriptionId': subscriptionId })).toBe(1);
  const period = await system.ctx.db.models.SubscriptionPeriod.findById(periodKey).lean();
  expect(period).toMatchObject({ status: 'paid', paymentId });
  const invoiceId = invoiceIdFor({ type: 'subscription_period', id: periodKey });
  expect(await system.ctx.db.models.Invoice.find({ subscriptionId }).lean()).toEqual([
    expect.objectContaining({ _id: invoiceId, status: 'paid', total: 4_200, documentStatus: 'stored' }),
  ]);
  // Billed next when the paid period ends.
  expect(await system.ctx.db.models.Subscription.findById(subscriptionId).lean()).toMatchObject({
    status: 'active',
    nextBillingAt: period!.end,
  });
  return invoiceId;
}

describe("a subscription's payment outcome, in a process serving renewals", () => {
  it("records the paid period inside the charge's job: no renew job, the attempt's, the charge's and the period's events in one append, no audit job", async () => {
    const recorded = recordSent();
    try {
      const { subscriptionId, periodKey } = await insertDueSubscription(system.ctx.db, {
        companyId,
        customerRef: 'payer-inline-01',
      });
      const { payment } = await renewUntilPaid(subscriptionId, periodKey);
      const invoiceId = await expectSettledOnce(subscriptionId, periodKey, payment._id);
      expect(recorded.renewJobs).not.toContain(renewJobAfter(subscriptionId, payment._id));

      const stored = await trailOf(system.ctx, companyId, [subscriptionId, payment._id, invoiceId]);
      expect(stored.map((event) => event.action)).toEqual(RENEWAL_ACTIONS);
      // One append, the charge job's: the attempt (which its payment records; the opening run sends none), the request,
      // the outcome and the period it paid, at consecutive places.
      expect(recorded.batches).toEqual([RENEWAL_ACTIONS]);
      expect(recorded.queued).toEqual([]);
      const places = stored.map((event) => event.sequence);
      expect(places).toEqual(places.map((_, i) => places[0]! + i));
    } finally {
      recorded.restore();
    }
  });

  it('queues the events as one audit job when their append fails, and the run goes on', async () => {
    const recorded = recordSent(1, true);
    try {
      const { subscriptionId, periodKey } = await insertDueSubscription(system.ctx.db, {
        companyId,
        customerRef: 'payer-inline-03',
      });
      const { payment } = await renewUntilPaid(subscriptionId, periodKey);
      const invoiceId = await expectSettledOnce(subscriptionId, periodKey, payment._id);
      expect(recorded.renewJobs).not.toContain(renewJobAfter(subscriptionId, payment._id));
      const stored = await trailOf(system.ctx, companyId, [subscriptionId, payment._id, invoiceId]);
      expect(stored.map((event) => event.action)).toEqual(RENEWAL_ACTIONS);
      // The refused append's events in one audit job, which the audit worker appended.
      expect(recorded.queued).toEqual([RENEWAL_ACTIONS]);
      expect(recorded.batches).toEqual([RENEWAL_ACTIONS]);
    } finally {
      recorded.restore();
    }
  });

  it('queues the renew job when that run can neither append nor queue its events, and each still reaches the trail once', async () => {
    // The charge's events (sent by the renewal run inside it, before the period is recorded paid; the opening run
    // sends none) are refused by the trail and the queue: that run fails with the period open, the renew job is queued.
    const recorded = recordSent(1);
    try {
      const { subscriptionId, periodKey } = await insertDueSubscription(system.ctx.db, {
        companyId,
        customerRef: 'payer-inline-02',
      });
      const { payment } = await renewUntilPaid(subscriptionId, periodKey);
      const invoiceId = await expectSettledOnce(subscriptionId, periodKey, payment._id);
      expect(recorded.renewJobs).toContain(renewJobAfter(subscriptionId, payment._id));
      const stored = await trailOf(system.ctx, companyId, [subscriptionId, payment._id, invoiceId]);
      expect(stored.map((event) => event.action)).toEqual(RENEWAL_ACTIONS);
      // The refused batch went again with the charge job's end; the renew job sent the period's events again (the
      // trail keeps each event id once).
      expect(recorded.batches).toEqual([RENEWAL_ACTIONS, RENEWAL_ACTIONS.slice(3)]);
      expect(recorded.queued).toEqual([]);
    } finally {
      recorded.restore();
    }
  });
});
