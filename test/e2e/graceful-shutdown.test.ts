import { startStripeSim, type StripeSim } from '../../devtools/stripe-sim';
import { createCompany, devAttestation } from '../../models/companies';
import { chargeJobId, enqueueCharge } from '../../queues/charges.queue';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';
import { insertPayment } from '../support/records';

/**
 * Issue 15: SIGTERM while a charge is running, and while invoices are being rendered. The workers process stops taking jobs, finishes the one it has
 * (Stripe answers late), closes its queues and connections, and exits 0 within the deadline: the payment is
 * recorded, its job completed once, nothing stalled.
 */
let ctx: TestContext;
let sim: StripeSim;
let workers: NodeProcess | undefined;
let companyId: string;

beforeAll(async () => {
  assertBuildIsCurrent();
  sim = await startStripeSim({ upstreamUrl: process.env.STRIPE_API_BASE ?? '' });
  ctx = await createTestContext('shutdown', { STRIPE_API_BASE: sim.url, SHUTDOWN_DEADLINE_MS: '20000' });
  companyId = await createCompany(ctx.db, {
    name: 'Quarry Road Clinic',
    stripeSecretKey: 'sk_test_51QuarryRoadClinicKey',
    compliance: devAttestation('test'),
  });
}, 60_000);

afterAll(async () => {
  await workers?.kill();
  await sim?.close();
  await ctx?.close();
});

it('finishes a charge that is waiting on Stripe when SIGTERM arrives, then exits 0', async () => {
  workers = startNodeProcess('workers', 'workers/main.js', ctx.env);
  await workers.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });

  // Stripe takes 3 s to confirm: the signal arrives while the job is inside that call.
  sim.script({ method: 'POST', path: /^\/v1\/payment_intents\/[^/]+\/confirm$/, delayMs: 3_000 });
  const payment = await insertPayment(ctx.db.models, { companyId, status: 'queued', attempts: 0 });
  await enqueueCharge(ctx.queues.charges, { paymentId: payment._id, requestId: payment.requestId });
  await waitFor(
    async () => sim.requests.filter((r) => r.path.endsWith('/confirm')).length,
    (confirms) => confirms > 0,
    { what: 'the charge to reach Stripe' },
  );

  const exit = await workers.stop('SIGTERM', 25_000);
  expect(exit).toEqual({ code: 0, signal: null });
  expect(workers.logRecords().some((r) => r.msg === 'stopped cleanly')).toBe(true);
  expect(workers.logRecords().some((r) => r.msg === 'job stalled')).toBe(false);

  expect((await ctx.db.models.Payment.findById(payment._id).lean())?.status).toBe('succeeded');
  const job = await ctx.queues.charges.getJob(chargeJobId(payment._id));
  expect(await job?.getState()).toBe('completed');
  expect(job?.attemptsMade).toBe(1);
  expect(sim.requests.filter((r) => r.path.endsWith('/confirm'))).toHaveLength(1);
}, 60_000);

it('finishes the charges and invoice renders it has when SIGTERM arrives, leaving the rest waiting, then exits 0', async () => {
  workers = startNodeProcess('workers', 'workers/main.js', ctx.env);
  await workers.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });
  const payments = await Promise.all(
    Array.from({ length: 12 }, () => insertPayment(ctx.db.models, { companyId, status: 'queued', attempts: 0 })),
  );
  for (const payment of payments) {
    await enqueueCharge(ctx.queues.charges, { paymentId: payment._id, requestId: payment.requestId });
  }
  // Each succeeded payment's invoice is rendered on the worker threads inside its charge job (issue 22): stop while
  // charges are running.
  await waitFor(
    () => ctx.queues.charges.getActiveCount(),
    (active) => active > 0,
    { what: 'a charge to be running', intervalMs: 5 },
  );
  const exit = await workers.stop('SIGTERM', 25_000);
  expect(exit).toEqual({ code: 0, signal: null });
  expect(workers.logRecords().some((r) => r.msg === 'job stalled')).toBe(false);

  // Nothing was cut off: no job is left active, none failed; what did not start waits for the next process.
  for (const queue of [ctx.queues.charges, ctx.queues.invoices]) {
    expect(await queue.getActiveCount()).toBe(0);
    expect(await queue.getFailedCount()).toBe(0);
  }
  const states = await Promise.all(
    payments.map(async (payment) => (await ctx.queues.charges.getJob(chargeJobId(payment._id)))?.getState()),
  );
  expect(states.every((state) => state === 'completed' || state === 'waiting')).toBe(true);
  const charged = payments.filter((_, i) => states[i] === 'completed').map((payment) => payment._id);
  expect(charged.length).toBeGreaterThan(0);
  // Every charge that finished has its invoice, inserted with its PDF stored: none half-rendered, none left to a job.
  const invoices = await ctx.db.models.Invoice.find({ companyId, paymentId: { $in: charged } }).lean();
  expect(invoices).toHaveLength(charged.length);
  expect(invoices.every((invoice) => invoice.documentStatus === 'stored')).toBe(true);
  expect(await ctx.queues.invoices.getWaitingCount()).toBe(0);
}, 60_000);
