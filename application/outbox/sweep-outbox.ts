import type { Queue } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import type { Models } from '../../models';
import { pendingAuditPath } from '../../models/pending-audit';
import { releaseOrphanedHolds } from '../../models/refund-ledger.model';
import type { Logger } from '../../platform/logger';
import { auditJobId, enqueueAuditEvent, type AuditJob } from '../../queues/audit.queue';
import { chargeJobId, enqueueCharge, type ChargeJob } from '../../queues/charges.queue';
import { ensureJob } from '../../queues/job-options';
import { enqueueRefund, refundJobId, type RefundJob } from '../../queues/refunds.queue';
import { enqueueInvoiceRender, invoiceJobId, type InvoiceJob } from '../../queues/invoices.queue';
import { enqueueStripeEvent, stripeEventJobId, type StripeEventJob } from '../../queues/stripe-events.queue';
import { clockAdvanceJobId, enqueueClockAdvance, type RenewalJob } from '../../queues/renewals.queue';
import {
  enqueueWebhookDelivery,
  webhookDeliveryJobId,
  type WebhookDeliveryJob,
} from '../../queues/webhook-deliveries.queue';
import { fanOutEvent, liveEndpointsOf } from '../outgoing-webhooks/emit-event';

export interface OutboxDeps {
  /** Company and Office hold the audit events of their changes until they are queued (swept with the audit queue). */
  models: Pick<Models, 'Payment' | 'WebhookEvent' | 'Refund' | 'RefundLedger'> &
    Partial<
      Pick<
        Models,
        | 'Company'
        | 'Office'
        | 'Invoice'
        | 'InvoiceSettings'
        | 'PayerProfile'
        | 'BillingSettings'
        | 'SweepMark'
        | 'WebhookEndpoint'
        | 'WebhookDelivery'
        | 'OutgoingEvent'
        | 'TestClock'
      >
    >;
  chargesQueue: Queue<ChargeJob>;
  stripeEventsQueue: Queue<StripeEventJob>;
  /** Refunds are swept when their queue is given. */
  refundsQueue?: Queue<RefundJob>;
  /** Pending audit events (models/pending-audit.ts) are swept when this queue and the Company and Office models are given. */
  auditQueue?: Queue<AuditJob>;
  /** Invoices and credit notes whose document is not stored are swept when this queue and the Invoice model are given. */
  invoicesQueue?: Queue<InvoiceJob>;
  /** Test clocks left advancing with no job (the api stopped between the write and the enqueue) get theirs. */
  renewalsQueue?: Queue<RenewalJob>;
  /** Outgoing webhook deliveries left pending with no job get theirs, on this retry schedule, when both are given. */
  webhookDeliveries?: { queue: Queue<WebhookDeliveryJob>; retryScheduleMs: readonly number[] };
  /** Issues the documents of settled payments, periods and refunds whose settling stopped before its invoicing hook. */
  invoiceSettled?: (cutoff: Date) => Promise<SweepResult>;
  logger: Logger;
  staleAfterMs: number;
  now?: () => Date;
}

export interface SweepResult {
  examined: number;
  requeued: number;
  /** Records whose job could not be ensured this round (logged; the next sweep tries again). */
  failed: number;
  /** Of `requeued`, how many each source gave a job (`sweepOutbox`'s total only; sources that requeued none left out). */
  requeuedBy?: Record<string, number>;
}

const SWEEP_BATCH = 500;
const DOCUMENT_CURSOR = 'invoice-documents-cursor';

/** One kind of record that can be left unfinished without a live job, and how to give it one. */
interface OutboxSource {
  name: string;
  sweep(deps: OutboxDeps, cutoff: Date): Promise<SweepResult>;
}

/**
 * Ensures a job for each record; one record that fails (a Redis blip, a bad row) is logged by id and skipped, so it
 * cannot stop the rest of the batch.
 */
async function ensureJobs<T extends { _id: string }>(
  deps: OutboxDeps,
  source: string,
  records: T[],
  ensure: (record: T) => Promise<boolean>,
): Promise<SweepResult> {
  const result: SweepResult = { examined: records.length, requeued: 0, failed: 0 };
  for (const record of records) {
    try {
      if (await ensure(record)) result.requeued += 1;
    } catch (error) {
      result.failed += 1;
      deps.logger.warn({ source, id: record._id, err: error }, 'outbox sweep could not queue a record');
    }
  }
  return result;
}

/** A payment whose enqueue was lost to a Redis outage, whose retries ran out, or that waits on a gateway decision. */
const payments: OutboxSource = {
  name: 'payments',
  async sweep(deps, cutoff) {
    const stale = await deps.models.Payment.find(
      { status: { $in: ['queued', 'processing'] }, updatedAt: { $lt: cutoff } },
      { requestId: 1 },
    )
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    return ensureJobs(deps, this.name, stale, (payment) =>
      ensureJob(deps.chargesQueue, chargeJobId(payment._id), () =>
        enqueueCharge(deps.chargesQueue, { paymentId: payment._id, requestId: payment.requestId }),
      ),
    );
  },
};

/** A stored Stripe event whose enqueue failed (Stripe may never deliver it again), or a replay cut short. */
const stripeEvents: OutboxSource = {
  name: 'stripe-events',
  async sweep(deps, cutoff) {
    const stale = await deps.models.WebhookEvent.find(
      { status: 'received', receivedAt: { $lt: cutoff } },
      { _id: 1, replays: 1 },
    )
      .sort({ receivedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    // A replayed event (ops reset it to received) has a job of its own per replay: the same id the replay used.
    return ensureJobs(deps, this.name, stale, (event) =>
      ensureJob(deps.stripeEventsQueue, stripeEventJobId(event._id, event.replays), () =>
        enqueueStripeEvent(deps.stripeEventsQueue, { eventId: event._id }, event.replays),
      ),
    );
  },
};

const refunds: OutboxSource = {
  name: 'refunds',
  async sweep(deps, cutoff) {
    const queue = deps.refundsQueue;
    if (!queue) return { examined: 0, requeued: 0, failed: 0 };
    const stale = await deps.models.Refund.find(
      { status: { $in: ['queued', 'processing'] }, updatedAt: { $lt: cutoff } },
      { requestId: 1 },
    )
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    return ensureJobs(deps, this.name, stale, (refund) =>
      ensureJob(queue, refundJobId(refund._id), () =>
        enqueueRefund(queue, { refundId: refund._id, requestId: refund.requestId }),
      ),
    );
  },
};

/** A refund hold whose request stopped before writing the refund: the amount is released for refunding again. */
const refundHolds: OutboxSource = {
  name: 'refund-holds',
  async sweep(deps, cutoff) {
    const holds = await releaseOrphanedHolds(deps.models, cutoff);
    if (holds.released > 0)
      deps.logger.info({ released: holds.released }, 'outbox sweep released orphaned refund holds');
    return { examined: holds.examined, requeued: 0, failed: 0 };
  },
};

/**
 * Audit events stored with a configuration change, an attestation or a company's setup (models/pending-audit.ts)
 * that were never queued: Redis did not take them, or the process died between the write and the enqueue. Each is
 * queued under its own id (recorded once, whoever sends it), then no longer pending.
 */
const pendingAudits: OutboxSource = {
  name: 'pending-audits',
  async sweep(deps, cutoff) {
    const { auditQueue } = deps;
    const { Company, Office } = deps.models;
    if (!auditQueue || !Company || !Office) return { examined: 0, requeued: 0, failed: 0 };
    const filter = { pendingAudit: { $exists: true, $ne: {} } };
    // Settings written by the api keep their events the same way (api/audited-change.ts).
    const holderModels = [
      Company,
      Office,
      deps.models.InvoiceSettings,
      deps.models.PayerProfile,
      deps.models.BillingSettings,
      deps.models.Invoice,
      deps.models.WebhookEndpoint,
      // A redelivery's event (api/routes/webhook-endpoints.ts).
      deps.models.WebhookDelivery,
    ];
    const holders = (
      await Promise.all(
        holderModels.map(async (model) => {
          if (!model) return [];
          const docs = (await (model as typeof Company)
            .find(filter, { pendingAudit: 1 })
            .limit(SWEEP_BATCH)
            .lean()) as Array<{ _id: string; pendingAudit?: Record<string, AuditEventInput[]> }>;
          return docs.map((doc) => ({
            doc,
            unset: (path: string) => (model as typeof Company).updateOne({ _id: doc._id }, { $unset: { [path]: 1 } }),
          }));
        }),
      )
    ).flat();
    const stale = holders.flatMap(({ doc, unset }) =>
      Object.entries(doc.pendingAudit ?? {})
        // A change whose writer may still be sending its events is left to it.
        .filter(([, events]) => events.every((event) => Date.parse(event.occurredAt) < cutoff.getTime()))
        .map(([key, events]) => ({ _id: `${doc._id}/${key}`, key, events, unset })),
    );
    const result = await ensureJobs(deps, this.name, stale, async (entry) => {
      let queued = false;
      for (const event of entry.events) {
        const added = await ensureJob(auditQueue, auditJobId(event.eventId), () =>
          enqueueAuditEvent(auditQueue, event),
        );
        queued ||= added;
      }
      await entry.unset(pendingAuditPath(entry.key));
      return queued;
    });
    // A deleted webhook endpoint is kept only until its deletion's audit event is queued (api/routes/webhook-endpoints.ts).
    await deps.models.WebhookEndpoint?.deleteMany({
      deletedAt: { $exists: true },
      $or: [{ pendingAudit: { $exists: false } }, { pendingAudit: {} }],
    });
    return result;
  },
};

/**
 * An invoice or credit note whose document is not stored: its render job was never queued (Redis down when it was
 * finalized), ran out of retries, or a crash left it a draft (the job finalizes it first). A shredded company's are
 * left alone: nothing of them can be written any more.
 */
const invoiceDocuments: OutboxSource = {
  name: 'invoice-documents',
  async sweep(deps, cutoff) {
    const { invoicesQueue: queue } = deps;
    const { Invoice } = deps.models;
    if (!queue || !Invoice) return { examined: 0, requeued: 0, failed: 0 };
    // A cursor over the pending documents (oldest first), so rows that stay pending whatever is queued (a shredded
    // company's, a document that cannot render) cannot fill every batch and starve the ones behind them: each run
    // continues after the last, and starts over once it reached the end.
    const { SweepMark } = deps.models;
    const from = (SweepMark ? await SweepMark.findById(DOCUMENT_CURSOR).lean() : null)?.upTo ?? new Date(0);
    const pending = await Invoice.find(
      { documentStatus: 'pending', updatedAt: { $gt: from, $lt: cutoff } },
      { companyId: 1, documentVersion: 1, updatedAt: 1 },
    )
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    const next = pending.length === SWEEP_BATCH ? pending.at(-1)!.updatedAt : new Date(0);
    await SweepMark?.updateOne({ _id: DOCUMENT_CURSOR }, { $set: { upTo: next } }, { upsert: true });
    const companies = [...new Set(pending.map((invoice) => invoice.companyId))];
    const shredded = new Set(
      deps.models.Company && companies.length > 0
        ? (
            await deps.models.Company.find(
              { _id: { $in: companies }, shreddedAt: { $exists: true } },
              { _id: 1 },
            ).lean()
          ).map((company) => company._id)
        : [],
    );
    const live = pending.filter((invoice) => !shredded.has(invoice.companyId));
    return ensureJobs(deps, this.name, live, (invoice) =>
      ensureJob(queue, invoiceJobId(invoice._id, invoice.documentVersion), () =>
        enqueueInvoiceRender(queue, {
          invoiceId: invoice._id,
          ...((invoice.documentVersion ?? 1) > 1 ? { version: invoice.documentVersion } : {}),
        }),
      ),
    );
  },
};

/** A settled payment, period or refund without its invoice or credit note (application/invoices/invoice-settled.ts). */
const settledWithoutInvoice: OutboxSource = {
  name: 'settled-without-invoice',
  sweep: (deps, cutoff) => deps.invoiceSettled?.(cutoff) ?? Promise.resolve({ examined: 0, requeued: 0, failed: 0 }),
};

/**
 * A test clock marked advancing whose job was never queued (the api stopped between the two): its advance job, under
 * the id the api would have used, finishes it (an advance is safe to run again, and runs at the clock's own time).
 */
const testClocks: OutboxSource = {
  name: 'test-clocks',
  async sweep(deps, cutoff) {
    const queue = deps.renewalsQueue;
    const TestClock = deps.models.TestClock;
    if (!queue || !TestClock) return { examined: 0, requeued: 0, failed: 0 };
    const stale = await TestClock.find({ status: 'advancing', updatedAt: { $lt: cutoff } }, { frozenTime: 1 })
      .sort({ updatedAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    return ensureJobs(deps, this.name, stale, (clock) =>
      ensureJob(queue, clockAdvanceJobId(clock._id, clock.frozenTime), () =>
        enqueueClockAdvance(queue, clock._id, clock.frozenTime),
      ),
    );
  },
};

/**
 * An outgoing webhook delivery still pending, overdue, with no live job: its enqueue was lost (the audit path stopped
 * between storing it and queueing it, or Redis lost its last writes), or its job failed for good before recording an
 * attempt. It gets the job the emitter, or its latest redelivery, would have queued (same id), or that job is retried;
 * the event keeps its webhook-id, so a receiver that has it already can tell. A delivery waiting out its retry
 * schedule is not due yet and is not read; one whose delayed job is merely late keeps that job.
 */
const webhookDeliveries: OutboxSource = {
  name: 'webhook-deliveries',
  async sweep(deps, cutoff) {
    const { WebhookDelivery } = deps.models;
    if (!deps.webhookDeliveries || !WebhookDelivery) return { examined: 0, requeued: 0, failed: 0 };
    const { queue, retryScheduleMs } = deps.webhookDeliveries;
    const stale = await WebhookDelivery.find(
      {
        status: 'pending',
        // A delivery stored before deliveries had `nextAttemptAt` is overdue by its last change.
        $or: [{ nextAttemptAt: { $lt: cutoff } }, { nextAttemptAt: { $exists: false }, updatedAt: { $lt: cutoff } }],
      },
      { redeliveries: 1 },
    )
      // Oldest due first: deliveries whose late jobs are still queued cannot keep a lost one out of every batch.
      .sort({ nextAttemptAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    return ensureJobs(deps, this.name, stale, (delivery) => {
      const job = {
        deliveryId: delivery._id,
        ...(delivery.redeliveries > 0 ? { redelivery: delivery.redeliveries } : {}),
      };
      return ensureJob(queue, webhookDeliveryJobId(job), () => enqueueWebhookDelivery(queue, job, retryScheduleMs));
    });
  },
};

/**
 * An outgoing webhook event whose fan-out was lost: stored, but its process stopped before a delivery was stored and
 * queued for every endpoint that wants it, and nothing sent its audit event again (a charge run again after its
 * payment moved on sends the payment's outcome now, not the one the event is of). Its deliveries are made and queued
 * as the emitter would have, for the company's live endpoints.
 */
const webhookEvents: OutboxSource = {
  name: 'webhook-events',
  async sweep(deps, cutoff) {
    const { OutgoingEvent, WebhookEndpoint, WebhookDelivery } = deps.models;
    if (!deps.webhookDeliveries || !OutgoingEvent || !WebhookEndpoint || !WebhookDelivery) {
      return { examined: 0, requeued: 0, failed: 0 };
    }
    const { queue, retryScheduleMs } = deps.webhookDeliveries;
    const stale = await OutgoingEvent.find(
      { fanOutPending: true, createdAt: { $lt: cutoff } },
      { companyId: 1, officeId: 1, type: 1, fanOutPending: 1 },
    )
      .sort({ createdAt: 1 })
      .limit(SWEEP_BATCH)
      .lean();
    const fanOut = {
      models: { OutgoingEvent, WebhookDelivery },
      enqueueDelivery: (job: WebhookDeliveryJob) => enqueueWebhookDelivery(queue, job, retryScheduleMs),
    };
    return ensureJobs(deps, this.name, stale, async (event) => {
      await fanOutEvent(fanOut, event, await liveEndpointsOf(WebhookEndpoint, event.companyId));
      return true;
    });
  },
};

export const OUTBOX_SOURCES: readonly OutboxSource[] = [
  payments,
  stripeEvents,
  refunds,
  refundHolds,
  pendingAudits,
  // Before the documents: an invoice it issues is queued at once, and the next source leaves it alone.
  settledWithoutInvoice,
  invoiceDocuments,
  testClocks,
  // Before the deliveries: the deliveries it makes are queued at once, and the next source leaves them alone.
  webhookEvents,
  webhookDeliveries,
];

/**
 * The outbox sweep: anything left unfinished for longer than `staleAfterMs` with no live job gets one, source by
 * source. A source that fails as a whole (its query) is logged and counted; the others still run.
 */
export async function sweepOutbox(deps: OutboxDeps): Promise<SweepResult> {
  const cutoff = new Date((deps.now?.() ?? new Date()).getTime() - deps.staleAfterMs);
  const total: Required<SweepResult> = { examined: 0, requeued: 0, failed: 0, requeuedBy: {} };
  for (const source of OUTBOX_SOURCES) {
    try {
      const result = await source.sweep(deps, cutoff);
      total.examined += result.examined;
      total.requeued += result.requeued;
      total.failed += result.failed;
      if (result.requeued > 0) total.requeuedBy[source.name] = result.requeued;
    } catch (error) {
      total.failed += 1;
      deps.logger.warn({ source: source.name, err: error }, 'outbox sweep source failed');
    }
  }
  if (total.requeued > 0 || total.failed > 0) deps.logger.info(total, 'outbox sweep re-enqueued stale work');
  return total;
}
