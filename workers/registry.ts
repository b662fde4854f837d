import { invoicesRendered } from '../platform/metrics';
import { type ConnectionOptions, type Job, type Worker } from 'bullmq';
import { z } from 'zod';
import type { PaymentGateway } from '../domain/payment-gateway';
import type { Database } from '../models';
import type { SettingsCache } from '../models/settings-cache';
import { loadAnchorSigner } from '../models/anchor-key';
import { driverCollection, plainCollection } from '../models/connection';
import type { AppConfig } from '../platform/config';
import type { Logger } from '../platform/logger';
import type { QueuePayloads, Queues } from '../queues';
import { auditQueueJobSchema, enqueueAuditEvents, type enqueueAuditEvent } from '../queues/audit.queue';
import type { OutcomeAudit } from '../application/payments/outcome-audit';
import { appendOrQueueAuditEvents } from '../application/audit/append-events';
import type { AuditEvent } from '../domain/audit-event';
import { chargeJobSchema } from '../queues/charges.queue';
import { ALL_QUEUE_NAMES, isQueueName, QUEUE_NAMES, type QueueName } from '../queues/names';
import { enqueueRefund, refundJobSchema } from '../queues/refunds.queue';
import { requestRefund } from '../application/refunds/request-refund';
import { stripeEventJobSchema } from '../queues/stripe-events.queue';
import { enqueueCharge } from '../queues/charges.queue';
import { renewAfterPayment, renewalJobSchema } from '../queues/renewals.queue';
import { invoiceSettledSources, type InvoiceSettledDeps } from '../application/invoices/invoice-settled';
import { manageDepsFor, resumeCollectionForPayer } from '../application/subscriptions/manage-subscriptions';
import { processRenewal, renewInBatch, type RenewalsDeps } from './renewals.worker';
import { processAuditEvent } from './audit.worker';
import { processCharge } from './charges.worker';
import { processMaintenance } from './maintenance.worker';
import {
  createQueueWorker,
  JobFailedError,
  type JobContext,
  type JobProcessor,
  type QueueWorkerOptions,
} from './queue-worker';
import { processRefund } from './refunds.worker';
import { processInvoice } from './invoices.worker';
import { renderDocumentNow } from '../application/invoices/render-invoice';
import type { InvoiceRecord } from '../models/invoice.model';
import {
  cachedPlanCategories,
  creditRefund,
  creditReturnedMoney,
  invoicePayment,
  invoicePeriod,
  voidCreditOfFailedRefund,
  type KnownRecords,
} from '../application/invoices/issue-invoice';
import type { SubscriptionPeriodRecord } from '../models/subscription.model';
import type { RenderPool } from '../documents/render-pool';
import { enqueueInvoiceRender, invoiceJobSchema } from '../queues/invoices.queue';
import type { PaymentRecord } from '../models/payment.model';
import type { RefundRecord } from '../models/refund.model';
import { processStripeEvent } from './stripe-events.worker';
import { cachedEndpoints, emitWebhookEvent, retentionEvery } from '../application/outgoing-webhooks/emit-event';
import { enqueueWebhookDelivery, webhookDeliveryJobSchema } from '../queues/webhook-deliveries.queue';
import { WebhookSender } from '../gateway/webhook-sender';
import { RESPONSE_EXCERPT_BYTES } from '../domain/webhook-endpoint';
import { createWebhookDeliveriesWorker, processWebhookDelivery } from './webhook-deliveries.worker';

/** What the worker process builds once (workers/main.ts) and every worker takes its dependencies from. */
export interface WorkerContext {
  config: AppConfig;
  logger: Logger;
  db: Database;
  connection: ConnectionOptions;
  queues: Queues;
  gateway: PaymentGateway;
  enqueueAudit: (event: Parameters<typeof enqueueAuditEvent>[1]) => Promise<void>;
  /** The PDF render threads: built by workers/main.ts when this process serves the invoices queue. */
  renderPool?: RenderPool;
  /** This process's cache of company and settings documents, validated per job (models/settings-cache.ts). */
  settings?: SettingsCache;
  /** This process serves the renewals queue: a subscription's payment outcome renews it in the charge's job. */
  servesRenewals?: boolean;
}

/** A queue's entry: its payload schema, its processor, and how to start a worker for it. */
export interface WorkerDefinition<N extends QueueName> {
  queue: N;
  schema: z.ZodType<QueuePayloads[N], unknown>;
  /** Any processor of this queue's jobs (its own dependencies are `start`'s business, hence `never` here). */
  process: (job: Job<QueuePayloads[N]>, deps: never, context: JobContext) => Promise<unknown>;
  start(context: WorkerContext): Worker<QueuePayloads[N]>;
}

export const INVALID_PAYLOAD = 'invalid_payload';

/**
 * Binds a queue to its schema and processor, and the processor to the
 * dependencies it needs. A job whose payload does not match the schema fails
 * at once (no retry can fix it) with the reason `invalid_payload`.
 */
function defineWorker<N extends QueueName, Deps, Result>(
  queue: N,
  definition: {
    schema: z.ZodType<QueuePayloads[N], unknown>;
    process: JobProcessor<QueuePayloads[N], Result, Deps>;
    deps(context: WorkerContext): Deps & QueueWorkerOptions;
  },
): WorkerDefinition<N> {
  const { schema, process } = definition;
  const checked: JobProcessor<QueuePayloads[N], Result, Deps> = (job, deps, context) => {
    if (!schema.safeParse(job.data).success) {
      return Promise.reject(new JobFailedError(INVALID_PAYLOAD, `invalid ${queue} job payload`));
    }
    return process(job, deps, context);
  };
  // Each job validates the settings it reads once (its own scope of the process's settings cache).
  const inJob =
    (settings: SettingsCache): JobProcessor<QueuePayloads[N], Result, Deps> =>
    (job, deps, context) =>
      settings.inJob(() => checked(job, deps, context));
  return {
    queue,
    schema,
    process,
    start: (context) =>
      createQueueWorker(queue, context.settings ? inJob(context.settings) : checked, definition.deps(context)),
  };
}

const common = ({ connection, config, logger }: WorkerContext) => ({ connection, prefix: config.queuePrefix, logger });

/** What issuing an invoice or credit note needs, from whichever worker saw its source settle. */
function invoicing(context: WorkerContext): InvoiceSettledDeps {
  return {
    models: context.db.models,
    encryption: context.db.encryption,
    numbering: context.db.invoiceNumbering,
    enqueueAudit: context.enqueueAudit,
    enqueueRender: (invoiceId, version, finalizedQueued) =>
      enqueueInvoiceRender(context.queues.invoices, {
        invoiceId,
        ...(version && version > 1 ? { version } : {}),
        ...(finalizedQueued ? { finalizedQueued } : {}),
      }),
    ...(context.settings ? { settings: context.settings } : {}),
    logger: context.logger,
  };
}

/**
 * In a process with the render threads, a document being issued is rendered and stored from the record in hand (no
 * render job, no second read of it, no update of it); a failed render leaves it to its render job.
 */
function renderingAtIssue(context: WorkerContext): Pick<InvoiceSettledDeps, 'renderNow'> {
  const pool = context.renderPool;
  if (!pool) return {};
  const deps = {
    models: context.db.models,
    documents: context.db.invoiceDocuments,
    encryption: context.db.encryption,
    render: (view: Parameters<RenderPool['render']>[0]) => pool.render(view),
    ...(context.settings ? { settings: context.settings } : {}),
  };
  return {
    renderNow: async (invoice: InvoiceRecord) => {
      const stored = await renderDocumentNow(deps, invoice);
      // Counted as the render job counts its documents: a dashboard of rendered PDFs sees these too.
      if (stored) invoicesRendered.inc({ kind: invoice.kind });
      return stored;
    },
  };
}

/**
 * Invoicing inside a job that collects its audit events (`OutcomeAudit`): the invoice's events go into the job's
 * batch, and a fallback render job is queued only after them (so it need not send `finalized` again).
 */
function invoicingInBatch(invoices: InvoiceSettledDeps, audit: OutcomeAudit | undefined): InvoiceSettledDeps {
  if (!audit) return invoices;
  return {
    ...invoices,
    enqueueAudit: audit.add,
    flushAudit: () => audit.flush(),
    enqueueRender: (invoiceId, version, finalizedQueued) =>
      audit.whenQueued(() => invoices.enqueueRender(invoiceId, version, finalizedQueued)),
  };
}

/**
 * A recorded payment outcome: its subscription renews; a succeeded one-off payment gets its invoice (rendered at once
 * where this process can). Given the outcome's audit batch (the charge worker's), the invoice's events go into it.
 *
 * In a process that serves the renewals queue, a subscription's payment outcome given a batch is recorded on its
 * period by a renewal run inside this job (its events, the period's invoice's with them, in the same batch), where a
 * renew job used to be queued for it: one job and its reads fewer per renewal. The run is the renew job's
 * (`renewSubscription`): a crash in it leaves this job to be run again, whose retry finds the payment settled and tells
 * its outcome again; a run that throws queues the renew job instead, as before.
 */
export const afterPaymentOutcome = (context: WorkerContext) => {
  const invoices: InvoiceSettledDeps = { ...invoicing(context), ...renderingAtIssue(context) };
  const renewals = context.servesRenewals ? renewalsDeps(context) : undefined;
  const renew = async (payment: PaymentRecord, audit?: OutcomeAudit) => {
    const subscriptionId = payment.subscription?.subscriptionId;
    if (renewals && audit && subscriptionId) {
      try {
        await renewInBatch(renewals, context.logger, subscriptionId, audit, payment);
        return;
      } catch (error) {
        context.logger.warn(
          { paymentId: payment._id, subscriptionId, err: error },
          'renewal after the payment outcome failed; queued as a renew job',
        );
      }
    }
    await renewAfterPayment(context.queues.renewals, payment);
  };
  return async (payment: PaymentRecord, audit?: OutcomeAudit) => {
    await renew(payment, audit);
    await invoicePayment(invoicingInBatch(invoices, audit), payment);
  };
};

/**
 * What the renewals worker's processor takes. One plan-category cache for its invoices (plans never change); in a
 * process with the render threads a paid period's PDF is rendered and stored as its invoice is issued, from the record
 * in hand (no render job); a renew job's events, its invoice's with them, are appended together
 * (workers/renewals.worker.ts).
 */
export function renewalsDeps(context: WorkerContext): RenewalsDeps {
  const invoices: InvoiceSettledDeps = {
    ...invoicing(context),
    planCategory: cachedPlanCategories(context.db.models.Plan),
    ...renderingAtIssue(context),
  };
  return {
    models: context.db.models,
    renewalsQueue: context.queues.renewals,
    enqueueCharge: (payment: PaymentRecord) =>
      enqueueCharge(context.queues.charges, { paymentId: payment._id, requestId: payment.requestId }),
    enqueueAudit: context.enqueueAudit,
    sendAuditEvents: outcomeAuditSender(context),
    ...(context.settings ? { settings: context.settings } : {}),
    onPeriodPaid: async (period: SubscriptionPeriodRecord, known?: KnownRecords, audit?: OutcomeAudit) => {
      await invoicePeriod(invoicingInBatch(invoices, audit), period, 'paid', undefined, known);
    },
    onPeriodUncollectible: async (period: SubscriptionPeriodRecord, at: Date, audit?: OutcomeAudit) => {
      await invoicePeriod(invoicingInBatch(invoices, audit), period, 'uncollectible', at);
    },
    // A canceled subscription's pending credit goes back through the refund use case (queued, audited, and given its
    // credit note like any refund).
    refundCredit: (payment, amount, idempotencyKey) =>
      requestRefund(
        {
          models: context.db.models,
          enqueueRefund: async (job, audit) => {
            await Promise.all([enqueueRefund(context.queues.refunds, job), context.enqueueAudit(audit)]);
          },
        },
        {
          payment,
          idempotencyKey,
          request: { amount, reason: 'requested_by_customer' },
          requestedBy: { type: 'service', id: 'renewals-worker' },
          requestId: `req_${idempotencyKey}`,
        },
      ),
  };
}

/** A succeeded refund of an invoiced payment gets its credit note. */
const afterRefundSucceeded = (context: WorkerContext) => async (refund: RefundRecord) => {
  await creditRefund(invoicing(context), refund);
};

const afterRefundFailed = (context: WorkerContext) => (refund: RefundRecord) =>
  voidCreditOfFailedRefund(invoicing(context), refund);

/**
 * The audit worker's hook that derives outgoing webhook events (application/outgoing-webhooks/emit-event.ts). Its
 * endpoint cache and the events' retention are built on the first catalog event, so audit actions outside the catalog
 * cost nothing.
 */
function webhookEventsOfAudit(context: WorkerContext): (event: AuditEvent) => Promise<unknown> {
  let hook = auditHooks.get(context);
  if (!hook) {
    hook = buildWebhookEventsOfAudit(context);
    auditHooks.set(context, hook);
  }
  return hook;
}

/** One hook per context (its endpoint cache), shared by the audit worker and the jobs that append their own events. */
const auditHooks = new WeakMap<WorkerContext, (event: AuditEvent) => Promise<unknown>>();

function buildWebhookEventsOfAudit(context: WorkerContext) {
  let endpoints: ReturnType<typeof cachedEndpoints> | undefined;
  let retention: (() => void) | undefined;
  const endpointsOf = (companyId: string) => {
    retention ??= retentionEvery(context.db.models, 60 * 60 * 1000, context.logger);
    retention();
    endpoints ??= cachedEndpoints(context.db.models.WebhookEndpoint, context.config.webhooks.endpointCacheMs);
    return endpoints(companyId);
  };
  return (event: Parameters<typeof emitWebhookEvent>[1]) =>
    emitWebhookEvent(
      {
        get models() {
          return context.db.models;
        },
        endpointsOf,
        enqueueDelivery: (job) =>
          enqueueWebhookDelivery(context.queues['webhook-deliveries'], job, context.config.webhooks.retryScheduleMs),
        logger: context.logger,
      },
      event,
    );
}

/**
 * How a charge or a renewal job records its outcome's audit events: appended in the job, through this process's group
 * commit of each chain, with the audit worker's webhook hook; queued as one audit job when the append fails.
 */
export function outcomeAuditSender(context: WorkerContext) {
  return appendOrQueueAuditEvents({
    auditTrail: context.db.auditTrail,
    onAppended: webhookEventsOfAudit(context),
    queue: (events) => enqueueAuditEvents(context.queues.audit, events),
    onQueued: (error) =>
      context.logger.warn({ err: error }, 'audit append in the job failed; queued for the audit worker'),
  });
}

/** Scheduled housekeeping carries no data. */
const maintenanceJobSchema = z.record(z.string(), z.never());

/**
 * Every queue with its payload schema and processor. Typed so that a queue name
 * (queues/names.ts) without an entry here, or an entry whose processor takes
 * another queue's payload, does not compile.
 */
export const WORKERS = {
  [QUEUE_NAMES.charges]: defineWorker(QUEUE_NAMES.charges, {
    schema: chargeJobSchema,
    process: processCharge,
    deps: (context) => ({
      ...common(context),
      concurrency: context.config.workers.chargeConcurrency,
      models: context.db.models,
      encryption: context.db.encryption,
      gateway: context.gateway,
      enqueueAudit: context.enqueueAudit,
      sendAuditEvents: outcomeAuditSender(context),
      onOutcome: afterPaymentOutcome(context),
      ...(context.settings ? { settings: context.settings } : {}),
    }),
  }),
  [QUEUE_NAMES.refunds]: defineWorker(QUEUE_NAMES.refunds, {
    schema: refundJobSchema,
    process: processRefund,
    deps: (context) => ({
      ...common(context),
      concurrency: context.config.workers.refundConcurrency,
      models: context.db.models,
      gateway: context.gateway,
      enqueueAudit: context.enqueueAudit,
      onRefundSucceeded: afterRefundSucceeded(context),
    }),
  }),
  [QUEUE_NAMES.audit]: defineWorker(QUEUE_NAMES.audit, {
    schema: auditQueueJobSchema,
    process: processAuditEvent,
    deps: (context) => ({
      ...common(context),
      concurrency: context.config.workers.auditConcurrency,
      auditTrail: context.db.auditTrail,
      onAppended: webhookEventsOfAudit(context),
    }),
  }),
  [QUEUE_NAMES.stripeEvents]: defineWorker(QUEUE_NAMES.stripeEvents, {
    schema: stripeEventJobSchema,
    process: processStripeEvent,
    deps: (context) => ({
      ...common(context),
      // Same order of work as a charge outcome (a few single-document reads and writes), so the same concurrency.
      concurrency: context.config.workers.chargeConcurrency,
      models: context.db.models,
      encryption: context.db.encryption,
      gateway: context.gateway,
      enqueueAudit: context.enqueueAudit,
      onOutcome: afterPaymentOutcome(context),
      onRefundSucceeded: afterRefundSucceeded(context),
      onRefundFailed: afterRefundFailed(context),
      onMoneyReturned: (returned) => creditReturnedMoney(invoicing(context), returned),
      onPaymentMethodSaved: (method) =>
        resumeCollectionForPayer(
          manageDepsFor({ models: context.db.models, queues: context.queues, enqueueAudit: context.enqueueAudit }),
          method,
        ),
    }),
  }),
  [QUEUE_NAMES.maintenance]: defineWorker(QUEUE_NAMES.maintenance, {
    schema: maintenanceJobSchema,
    process: processMaintenance,
    deps: (context) => ({
      ...common(context),
      // One sweep or anchor run at a time per process.
      concurrency: 1,
      models: context.db.models,
      chargesQueue: context.queues.charges,
      stripeEventsQueue: context.queues['stripe-events'],
      refundsQueue: context.queues.refunds,
      renewalsQueue: context.queues.renewals,
      auditQueue: context.queues.audit,
      auditTrail: context.db.auditTrail,
      anchorSigner: loadAnchorSigner(context.config.audit.anchorKeyFile, context.config.env !== 'production'),
      staleAfterMs: context.config.outbox.staleAfterMs,
      reconcileAfterMs: context.config.reconcile.afterMs,
      onOutcome: afterPaymentOutcome(context),
      onRefundSucceeded: afterRefundSucceeded(context),
      onRefundFailed: afterRefundFailed(context),
      invoicesQueue: context.queues.invoices,
      webhookDeliveries: {
        queue: context.queues['webhook-deliveries'],
        retryScheduleMs: context.config.webhooks.retryScheduleMs,
      },
      invoiceSettled: (cutoff: Date) => invoiceSettledSources(invoicing(context), cutoff),
      gateway: context.gateway,
      encryption: context.db.encryption,
      enqueueAudit: context.enqueueAudit,
      retentionDays: context.config.audit.retentionDays,
    }),
  }),
  [QUEUE_NAMES.renewals]: defineWorker(QUEUE_NAMES.renewals, {
    schema: renewalJobSchema,
    process: processRenewal,
    deps: (context) => ({
      ...common(context),
      concurrency: context.config.workers.renewalConcurrency,
      ...renewalsDeps(context),
    }),
  }),
  [QUEUE_NAMES.invoices]: defineWorker(QUEUE_NAMES.invoices, {
    schema: invoiceJobSchema,
    process: processInvoice,
    deps: (context) => {
      const pool = context.renderPool;
      if (!pool) throw new Error('the invoices worker needs the render pool (workers/main.ts builds it)');
      return {
        ...common(context),
        concurrency: context.config.workers.invoiceConcurrency,
        models: context.db.models,
        numbering: context.db.invoiceNumbering,
        documents: context.db.invoiceDocuments,
        encryption: context.db.encryption,
        render: (view) => pool.render(view),
        enqueueAudit: context.enqueueAudit,
        ...(context.settings ? { settings: context.settings } : {}),
      };
    },
  }),
  // Its own start: retries follow the configured schedule (a custom backoff strategy on the worker).
  [QUEUE_NAMES.webhookDeliveries]: {
    queue: QUEUE_NAMES.webhookDeliveries,
    schema: webhookDeliveryJobSchema,
    process: processWebhookDelivery,
    start: (context) =>
      createWebhookDeliveriesWorker({
        ...common(context),
        concurrency: context.config.webhooks.concurrency,
        models: context.db.models,
        endpoints: driverCollection(context.db.models.WebhookEndpoint),
        deliveries: plainCollection(context.db, context.db.models.WebhookDelivery),
        events: plainCollection(context.db, context.db.models.OutgoingEvent),
        sender: new WebhookSender({
          timeoutMs: context.config.webhooks.timeoutMs,
          allowLoopback: context.config.webhooks.allowLoopback,
          excerptBytes: RESPONSE_EXCERPT_BYTES,
        }),
        enqueueAudit: context.enqueueAudit,
        retryScheduleMs: context.config.webhooks.retryScheduleMs,
        disableAfterMs: context.config.webhooks.disableAfterMs,
        stalledCheckMs: context.config.webhooks.stalledCheckMs,
      }),
  },
} satisfies { [N in QueueName]: WorkerDefinition<N> };

export class UnknownQueueError extends Error {
  constructor(problem: string) {
    super(`${problem}; the queues are: ${ALL_QUEUE_NAMES.join(', ')}`);
    this.name = 'UnknownQueueError';
  }
}

/**
 * The queues a worker process runs: all of them by default, or the ones asked
 * for (in registry order, once each). Refuses a name it does not know, before
 * anything connects, so a typo cannot start a process that serves nothing.
 */
export function selectQueues(requested?: readonly string[]): QueueName[] {
  if (requested === undefined) return [...ALL_QUEUE_NAMES];
  const names = requested.map((name) => name.trim());
  const unknown = names.filter((name) => !isQueueName(name));
  if (unknown.length > 0) {
    throw new UnknownQueueError(`unknown queue ${unknown.map((name) => JSON.stringify(name)).join(', ')}`);
  }
  if (names.length === 0) throw new UnknownQueueError('no queue selected');
  return ALL_QUEUE_NAMES.filter((name) => names.includes(name));
}

/** `--queues charges,audit` (or `--queues=charges,audit`); anything else on the command line is refused. */
export function parseWorkerArgs(argv: readonly string[]): { queues?: string[] } {
  let queues: string[] | undefined;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i]!;
    const inline = arg.startsWith('--queues=') ? arg.slice('--queues='.length) : undefined;
    if (arg !== '--queues' && inline === undefined) throw new Error(`unknown argument ${JSON.stringify(arg)}`);
    const value = inline ?? argv[(i += 1)];
    if (value === undefined || value.startsWith('--')) throw new Error('--queues needs a comma-separated list');
    queues = [...(queues ?? []), ...value.split(',')];
  }
  return queues ? { queues } : {};
}
