import type { Job } from 'bullmq';
import { createCompany, devAttestation } from '../../models/companies';
import type { AuditEventInput } from '../../domain/audit-event';
import { invoiceIdFor } from '../../domain/invoice-number';
import { StripeGateway } from '../../gateway/stripe-gateway';
import { documentKey } from '../../models/invoice-document';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import type { ChargeJob } from '../../queues/charges.queue';
import { invoiceJobId, type InvoiceJob } from '../../queues/invoices.queue';
import { createRenderPool, type RenderPool } from '../../documents/render-pool';
import { processCharge, type ChargeDeps } from '../../workers/charges.worker';
import { processInvoice } from '../../workers/invoices.worker';
import { afterPaymentOutcome, outcomeAuditSender, type WorkerContext } from '../../workers/registry';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { insertPayment } from '../support/records';

/**
 * Issue 22: a charge's invoice is rendered and stored as it is issued (no render job), and the request's and the
 * outcome's audit events (payment requested and settled, invoice finalized and rendered) go out in one job: each
 * appended once whatever is retried.
 */
let system: InProcessSystem;
let companyId: string;
let token: string;

beforeAll(async () => {
  system = await startInProcessSystem('charge_invoice');
  companyId = await createCompany(system.ctx.db, {
    name: 'Lakeside Pediatrics',
    stripeSecretKey: 'sk_test_lakeside',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
});

afterAll(async () => {
  await system.close();
});

const OUTCOME_ACTIONS = ['payment.requested', 'payment.succeeded', 'invoice.finalized', 'invoice.rendered'];

/** The trail's events of a payment and its invoice, once all four are there (and the audit queue is idle). */
async function trailOf(paymentId: string) {
  const invoiceId = invoiceIdFor({ type: 'payment', id: paymentId });
  const events = await waitFor(
    async () => {
      const counts = await system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const idle = Object.values(counts).every((n) => n === 0);
      const stored = await system.ctx.db.models.AuditEvent.find({
        companyId,
        'resource.id': { $in: [paymentId, invoiceId] },
      }).lean();
      return { idle, stored };
    },
    ({ idle, stored }) => idle && OUTCOME_ACTIONS.every((action) => stored.some((event) => event.action === action)),
    { what: `the audit events of ${paymentId}`, timeoutMs: 30_000 },
  );
  return events.stored.map((event) => event.action).sort();
}

/**
 * A charges worker's dependencies as workers/registry.ts builds them, with a render pool of the test's; `tap` sees each
 * batch of audit events before the registry's sender records it (and, by throwing, stops it as a killed process would).
 */
function chargeDeps(
  renderPool: RenderPool | undefined,
  tap?: (events: readonly AuditEventInput[]) => Promise<void> | void,
): ChargeDeps {
  const { ctx } = system;
  const gateway = new StripeGateway({ endpoint: ctx.config.stripe.endpoint, timeoutMs: ctx.config.stripe.timeoutMs });
  const enqueueAudit = (event: AuditEventInput) => enqueueAuditEvent(ctx.queues.audit, event);
  const context: WorkerContext = {
    config: ctx.config,
    logger: ctx.logger,
    db: ctx.db,
    connection: ctx.redis,
    queues: ctx.queues,
    gateway,
    enqueueAudit,
    ...(renderPool ? { renderPool } : {}),
  };
  const send = outcomeAuditSender(context);
  return {
    models: ctx.db.models,
    encryption: ctx.db.encryption,
    gateway,
    enqueueAudit,
    sendAuditEvents: async (events) => {
      await tap?.(events);
      await send(events);
    },
    onOutcome: afterPaymentOutcome(context),
    logger: ctx.logger,
  };
}

const chargeJob = (paymentId: string, attemptsMade = 0) =>
  ({
    id: `charge-${paymentId}`,
    data: { paymentId, requestId: `req_${paymentId}` },
    attemptsMade,
  }) as unknown as Job<ChargeJob>;

/** The test's own render threads (the system's workers have theirs). */
const renderPool = (): RenderPool => createRenderPool({ threads: 1 });

/** The system's own invoices worker, paused while a test runs a render job itself. */
const invoicesWorker = () => system.workers.workers.find((worker) => worker.name === 'invoices')!;

describe("a charge's invoice, issued with its PDF", () => {
  it('is stored with its document when the charge completes, with no render job queued', async () => {
    const response = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        'idempotency-key': `at-issue-${Date.now()}`,
      },
      body: JSON.stringify({
        amount: 4_500,
        currency: 'usd',
        customer: 'cus_AtIssue01',
        paymentMethod: 'pm_card_visa',
      }),
    });
    expect(response.status).toBe(202);
    const paymentId = ((await response.json()) as { id: string }).id;
    const invoiceId = invoiceIdFor({ type: 'payment', id: paymentId });
    const invoice = await waitFor(
      () => system.ctx.db.models.Invoice.findById(invoiceId).lean(),
      (found) => found !== null,
      { what: `the invoice of ${paymentId}`, timeoutMs: 30_000 },
    );
    // Inserted already naming its stored PDF: the charge job rendered it.
    expect(invoice).toMatchObject({ status: 'paid', documentStatus: 'stored', total: 4_500 });
    expect(invoice!.document?.sha256).toMatch(/^[0-9a-f]{64}$/);
    const stored = await system.ctx.rawMongo
      .db()
      .collection('invoice_documents')
      .findOne({ _id: documentKey(invoice!) as never });
    expect(stored).not.toBeNull();
    expect(await system.ctx.queues.invoices.getJob(invoiceJobId(invoiceId))).toBeUndefined();
    // Each event of the charge and its invoice once, appended by the charge job itself: no audit job carries them.
    expect(await trailOf(paymentId)).toEqual([...OUTCOME_ACTIONS].sort());
    const auditJobs = await system.ctx.queues.audit.getJobs(['completed', 'failed', 'waiting', 'active', 'delayed']);
    const carried = auditJobs.filter((job) => JSON.stringify(job.data).includes(paymentId));
    expect(carried).toEqual([]);
  });
});

describe("the outcome's audit events, exactly once", () => {
  it('are all appended once when the job dies before queuing them, is retried, and is delivered again', async () => {
    const pool = renderPool();
    try {
      const payment = await insertPayment(system.ctx.db.models, {
        companyId,
        status: 'queued',
        attempts: 0,
        customer: 'cus_Retried01',
      });
      // The first run charges, records and invoices, then dies as it queues the outcome's events.
      let killed = 0;
      const dying = chargeDeps(pool, () => {
        killed += 1;
        return Promise.reject(new Error('process killed'));
      });
      await expect(processCharge(chargeJob(payment._id), dying, { logger: system.ctx.logger })).rejects.toThrow(
        'process killed',
      );
      expect(killed).toBe(1);
      expect(await system.ctx.db.models.Payment.findById(payment._id).lean()).toMatchObject({ status: 'succeeded' });
      // Its retry, then a redelivery of the completed job: the same events again, under their fixed ids.
      const deps = chargeDeps(pool);
      for (const attempt of [1, 2]) {
        await expect(
          processCharge(chargeJob(payment._id, attempt), deps, { logger: system.ctx.logger }),
        ).resolves.toEqual({ paymentId: payment._id, status: 'succeeded' });
      }
      expect(await trailOf(payment._id)).toEqual([...OUTCOME_ACTIONS].sort());
      // One invoice, numbered once, its document stored by the first run and kept.
      const invoices = await system.ctx.db.models.Invoice.find({ paymentId: payment._id }).lean();
      expect(invoices).toHaveLength(1);
      expect(invoices[0]).toMatchObject({ documentStatus: 'stored' });
    } finally {
      await pool.close();
    }
  });

  it('sends `payment.requested` when an attempt fails transiently, and once in all, before the outcome, when its retry succeeds', async () => {
    const pool = renderPool();
    try {
      const payment = await insertPayment(system.ctx.db.models, {
        companyId,
        status: 'queued',
        attempts: 0,
        customer: 'cus_Transient01',
      });
      const invoiceId = invoiceIdFor({ type: 'payment', id: payment._id });
      const batches: string[][] = [];
      const deps = chargeDeps(pool, (events) => {
        batches.push(events.map((event) => event.action));
      });
      // Stripe answers the first confirm with a 503: the attempt throws for BullMQ to retry.
      system.sim.script({ method: 'POST', path: /\/confirm$/, status: 503 });
      await expect(processCharge(chargeJob(payment._id), deps, { logger: system.ctx.logger })).rejects.toThrow();
      expect(await system.ctx.db.models.Payment.findById(payment._id).lean()).toMatchObject({ status: 'processing' });
      // The request is on the trail already, before any retry: the failed attempt appended it as it ended.
      const afterFirst = await waitFor(
        async () => {
          const counts = await system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
          const stored = await system.ctx.db.models.AuditEvent.find({ companyId, 'resource.id': payment._id }).lean();
          return { idle: Object.values(counts).every((n) => n === 0), stored };
        },
        ({ idle, stored }) => idle && stored.length > 0,
        { what: `the request of ${payment._id} on the trail`, timeoutMs: 30_000 },
      );
      expect(afterFirst.stored.map((event) => event.action)).toEqual(['payment.requested']);

      await expect(processCharge(chargeJob(payment._id, 1), deps, { logger: system.ctx.logger })).resolves.toEqual({
        paymentId: payment._id,
        status: 'succeeded',
      });
      expect(batches).toEqual([['payment.requested'], OUTCOME_ACTIONS]);
      // Each event once, and in the chain the request comes first.
      expect(await trailOf(payment._id)).toEqual([...OUTCOME_ACTIONS].sort());
      const chain = await system.ctx.db.models.AuditEvent.find({
        companyId,
        'resource.id': { $in: [payment._id, invoiceId] },
      })
        .sort({ sequence: 1 })
        .lean();
      expect(chain.map((event) => event.action)).toEqual(OUTCOME_ACTIONS);
    } finally {
      await pool.close();
    }
  });

  it('leaves a failed render to its job, queued after the events, which does not send `finalized` again', async () => {
    const broken: RenderPool = {
      render: () => Promise.reject(new Error('render thread died')),
      threads: 0,
      close: () => Promise.resolve(),
    };
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'queued',
      attempts: 0,
      customer: 'cus_Fallback01',
    });
    const invoiceId = invoiceIdFor({ type: 'payment', id: payment._id });
    let batches: string[][] = [];
    let renderQueuedAfter: string[] | undefined;
    const deps = chargeDeps(broken, (events) => {
      batches = [...batches, events.map((event) => event.action)];
    });
    const original = system.ctx.queues.invoices.add.bind(system.ctx.queues.invoices);
    await invoicesWorker().pause(true);
    const spy = jest.spyOn(system.ctx.queues.invoices, 'add').mockImplementation(async (...args) => {
      renderQueuedAfter = batches.flat();
      return original(...args);
    });
    try {
      await processCharge(chargeJob(payment._id), deps, { logger: system.ctx.logger });
    } finally {
      spy.mockRestore();
    }
    // The requested, settled and finalized events in one batch; the render job queued only after it, marked.
    expect(batches).toEqual([['payment.requested', 'payment.succeeded', 'invoice.finalized']]);
    expect(renderQueuedAfter).toEqual(['payment.requested', 'payment.succeeded', 'invoice.finalized']);
    const job = await system.ctx.queues.invoices.getJob(invoiceJobId(invoiceId));
    expect(job?.data).toEqual({ invoiceId, finalizedQueued: true });

    // The render job, as the invoices worker runs it: stores the PDF and sends `rendered` alone.
    const sent: string[] = [];
    const pool = renderPool();
    try {
      const invoicesDeps = {
        models: system.ctx.db.models,
        numbering: system.ctx.db.invoiceNumbering,
        documents: system.ctx.db.invoiceDocuments,
        encryption: system.ctx.db.encryption,
        render: (view: Parameters<RenderPool['render']>[0]) => pool.render(view),
        enqueueAudit: async (event: AuditEventInput) => {
          sent.push(event.action);
          await enqueueAuditEvent(system.ctx.queues.audit, event);
        },
      };
      const renderJob = { id: job!.id, data: job!.data } as unknown as Job<InvoiceJob>;
      await processInvoice(renderJob, invoicesDeps, { logger: system.ctx.logger });
      expect(sent).not.toContain('invoice.finalized');
      // Without the mark (the outbox sweep's job), a render re-sends it: what the mark saves.
      const unmarked = { id: 'unmarked', data: { invoiceId } } as unknown as Job<InvoiceJob>;
      await system.ctx.db.models.Invoice.updateOne(
        { _id: invoiceId },
        { $set: { documentStatus: 'pending' }, $unset: { document: 1 } },
      );
      await processInvoice(unmarked, invoicesDeps, { logger: system.ctx.logger });
      expect(sent).toContain('invoice.finalized');
    } finally {
      await pool.close();
      void invoicesWorker().resume();
    }
    const invoice = await system.ctx.db.models.Invoice.findById(invoiceId).lean();
    expect(invoice).toMatchObject({ documentStatus: 'stored' });
    // Whoever sent what, the trail has each event once.
    expect(await trailOf(payment._id)).toEqual([...OUTCOME_ACTIONS].sort());
  });
});
