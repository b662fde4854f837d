import type { SettingsReads } from '../../models/settings-cache';
import type { AuditEventInput } from '../../domain/audit-event';
import { transitionEventId, type AuditAction } from '../../domain/audit-actions';
import { invoiceAmountsProblem, type DocumentKind } from '../../domain/invoice';
import { ADJUSTMENT_WORDING, planLine, serviceLine } from '../../domain/invoice-catalog';
import {
  creditNoteIdFor,
  returnCreditNoteIdFor,
  DEFAULT_INVOICE_NUMBER_PREFIX,
  formatDocumentNumber,
  invoiceIdFor,
  yearIn,
} from '../../domain/invoice-number';
import type { Models } from '../../models';
import { driverCollection } from '../../models/connection';
import { isDuplicateKeyError } from '../../models/errors';
import type { InvoiceNumbering } from '../../models/invoice-number.model';
import { invoiceSettingsId } from '../../models/invoice-settings.model';
import type { InvoiceLineRecord, InvoiceRecord, StoredDocumentRef } from '../../models/invoice.model';
import type { PaymentRecord } from '../../models/payment.model';
import type { RefundRecord } from '../../models/refund.model';
import type { StripeCustomerRecord } from '../../models/stripe-customer.model';
import type { SubscriptionPeriodRecord, SubscriptionRecord } from '../../models/subscription.model';
import type { PlanCategory } from '../../domain/plan';
import type { FieldEncryption } from '../../models/encryption';
import type { Logger } from '../../platform/logger';
import { voidDocument, voidedEvent } from './void-invoice';

export interface IssueInvoiceDeps {
  models: Pick<
    Models,
    | 'Invoice'
    | 'InvoiceSettings'
    | 'Subscription'
    | 'Plan'
    | 'Payment'
    | 'SavedPaymentMethod'
    | 'BillingSettings'
    | 'StripeCustomer'
  >;
  /** Finds the payer reference of a one-off payment's `cus_…` (one payer, one reference); without it, the `cus_…`. */
  encryption?: Pick<FieldEncryption, 'encrypt'>;
  numbering: Pick<InvoiceNumbering, 'assign'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /**
   * Where `enqueueAudit` only collects events into the job's one audit batch (`OutcomeAudit`): queues them now. For a
   * write that relies on an event being queued already (an outbox entry cleared after it, void-invoice.ts).
   */
  flushAudit?: () => Promise<void>;
  /**
   * Queues the rendering of a finalized document (job id = its id, and its document version after the first);
   * `finalizedQueued` when its `finalized` event was queued (or collected by the job that queues this) before.
   */
  enqueueRender: (invoiceId: string, version?: number, finalizedQueued?: boolean) => Promise<void>;
  /**
   * Renders and stores the document of an invoice being issued, from the record this process holds (no render job, no
   * second read of it): in a process with the render threads. Undefined when nothing was stored (a shredded company);
   * a failure leaves the document to its render job.
   */
  renderNow?: (invoice: InvoiceRecord) => Promise<{ document: StoredDocumentRef; phiLevel: string } | undefined>;
  /** A plan's category (plans never change once created, so a per-process cache may answer: `cachedPlanCategories`). */
  planCategory?: (planId: string) => Promise<PlanCategory | undefined>;
  /** The worker's settings cache (models/settings-cache.ts): invoice and billing settings read through it. */
  settings?: SettingsReads;
  logger: Logger;
}

/** What the caller of `invoicePeriod` already read in the same job (a renewal): not read again. */
export interface KnownRecords {
  subscription?: SubscriptionRecord;
  payment?: PaymentRecord;
}

/**
 * Plan categories, read once per plan and process: a plan is never updated (a change of price or category is a new
 * plan), so a cached category cannot go stale. Bounded: the oldest entry goes first.
 */
export function cachedPlanCategories(
  Plan: Models['Plan'],
  max = 10_000,
): (planId: string) => Promise<PlanCategory | undefined> {
  // A plan not found stays not found (ids are never reused): null.
  const categories = new Map<string, PlanCategory | null>();
  return async (planId) => {
    const known = categories.get(planId);
    if (known !== undefined) return known ?? undefined;
    const plan = await Plan.findById(planId, { category: 1 }).lean();
    if (categories.size >= max) categories.delete(categories.keys().next().value!);
    categories.set(planId, plan?.category ?? null);
    return plan?.category;
  };
}

const ACTOR: AuditEventInput['actor'] = { type: 'system', id: 'invoicing' };

type Draft = Omit<InvoiceRecord, 'createdAt' | 'updatedAt'>;

/**
 * The invoice of a settled subscription period: `paid` (its payment succeeded) or `uncollectible` (dunning gave up).
 * A period with nothing to bill (a trial, a credit that covered it) has none. Idempotent: the id derives from the
 * period, so a second call (a retried renewal, the sweep) finds the first one's invoice.
 */
export async function invoicePeriod(
  deps: IssueInvoiceDeps,
  period: SubscriptionPeriodRecord,
  settleAs: 'paid' | 'uncollectible',
  at: Date = new Date(),
  known: KnownRecords = {},
): Promise<InvoiceRecord | undefined> {
  if (period.amount <= 0) return undefined;
  if (settleAs === 'uncollectible' && period.kind === 'adjustment') {
    // A plan change's difference that could not be charged is carried onto the next bill (docs/billing-rules.md):
    // billing it here too would bill it twice. Never issued; one issued before this rule is voided.
    const id = invoiceIdFor({ type: 'subscription_period', id: period._id });
    await voidDocument(
      deps,
      { invoiceId: id, companyId: period.companyId },
      ['open', 'uncollectible'],
      (invoice, before, when) => voidedEvent(invoice, before, when, ACTOR, 'adjustment_carried'),
    );
    return undefined;
  }
  const { Subscription, Plan, Payment, SavedPaymentMethod } = deps.models;
  const subscription =
    known.subscription?._id === period.subscriptionId
      ? known.subscription
      : await Subscription.findById(period.subscriptionId).lean();
  if (!subscription) throw new Error(`subscription ${period.subscriptionId} of period ${period._id} is missing`);
  const category = deps.planCategory
    ? await deps.planCategory(subscription.planId)
    : (await Plan.findById(subscription.planId, { category: 1 }).lean())?.category;
  const line = planLine(category ?? 'membership', subscription.interval);
  const proration = period.proration ?? 0;
  const base = period.amount - proration;
  // A plan change billed at once (an adjustment record) is its difference alone. No line is negative (the billing
  // rules): a credit from a plan change is shown netted into the plan's line, which then bills what the period bills.
  const lines: InvoiceLineRecord[] =
    proration < 0
      ? [
          {
            code: line.code,
            description: `${line.description}, ${ADJUSTMENT_WORDING.credited}`,
            quantity: 1,
            unitAmount: period.amount,
            amount: period.amount,
          },
        ]
      : base !== 0
        ? [{ ...line, quantity: 1, unitAmount: base, amount: base }]
        : [];
  if (proration > 0) {
    lines.push({
      code: 'proration',
      description: ADJUSTMENT_WORDING.proration,
      quantity: 1,
      unitAmount: proration,
      amount: proration,
    });
  }
  // The card is printed only when it is certainly the one that paid: the one recorded with the attempt that paid, or
  // (a period recorded before attempts kept their card) the subscription's card if it is the payment's.
  let paidWith: InvoiceRecord['paidWith'];
  if (settleAs === 'paid' && period.paymentId) {
    if (period.attemptCard?.paymentId === period.paymentId) {
      paidWith = { brand: period.attemptCard.brand, last4: period.attemptCard.last4 };
    } else {
      const [payment, method] = await Promise.all([
        known.payment?._id === period.paymentId
          ? known.payment
          : Payment.findById(period.paymentId, { paymentMethod: 1 }).lean(),
        SavedPaymentMethod.findById(subscription.paymentMethodId, { stripePaymentMethodId: 1, card: 1 }).lean(),
      ]);
      if (payment && method?.card && String(method.stripePaymentMethodId) === payment.paymentMethod) {
        paidWith = { brand: method.card.brand, last4: method.card.last4 };
      }
    }
  }
  const issuedAt = settleAs === 'paid' ? (period.paidAt ?? at) : at;
  const invoice = await issue(deps, {
    _id: invoiceIdFor({ type: 'subscription_period', id: period._id }),
    companyId: period.companyId,
    ...(period.officeId ? { officeId: period.officeId } : {}),
    kind: 'invoice',
    status: 'draft',
    source: { type: 'subscription_period', id: period._id },
    settleAs,
    customerRef: subscription.customerRef,
    subscriptionId: subscription._id,
    ...(period.paymentId ? { paymentId: period.paymentId } : {}),
    currency: period.currency,
    lines,
    subtotal: period.amount,
    total: period.amount,
    amountPaid: settleAs === 'paid' ? period.amount : 0,
    amountDue: settleAs === 'paid' ? 0 : period.amount,
    period: { start: period.start, end: period.end },
    ...(paidWith ? { paidWith } : {}),
    issuedAt,
    timeZone: subscription.cycle.timeZone,
    ...(settleAs === 'paid' ? { paidAt: issuedAt } : {}),
    documentStatus: 'pending',
  });
  // A period that dunning gave up on and that was collected later (a new card): its invoice becomes paid.
  if (settleAs === 'paid' && invoice.status === 'uncollectible') {
    return collectedLater(deps, invoice, {
      paidAt: period.paidAt ?? at,
      ...(period.paymentId ? { paymentId: period.paymentId } : {}),
      ...(paidWith ? { paidWith } : {}),
    });
  }
  return invoice;
}

/**
 * An uncollectible invoice whose period was paid later moves to `paid` (as Stripe's does): paid in full, and a new
 * version of its document is rendered to say so (the first, as issued, stays stored). One conditional write; a
 * racing or repeated call finds it paid and only makes sure the event and the render are queued.
 */
export async function collectedLater(
  deps: Pick<IssueInvoiceDeps, 'models' | 'enqueueAudit' | 'enqueueRender' | 'logger'>,
  invoice: InvoiceRecord,
  payment: { paidAt: Date; paymentId?: string; paidWith?: InvoiceRecord['paidWith'] },
): Promise<InvoiceRecord> {
  const { Invoice } = deps.models;
  const paid =
    (await Invoice.findOneAndUpdate(
      { _id: invoice._id, status: 'uncollectible' },
      {
        $set: {
          status: 'paid',
          amountPaid: invoice.total,
          amountDue: 0,
          paidAt: payment.paidAt,
          ...(payment.paymentId ? { paymentId: payment.paymentId } : {}),
          ...(payment.paidWith ? { paidWith: payment.paidWith } : {}),
          documentVersion: 2,
          documentStatus: 'pending',
        },
        $unset: { document: 1 },
      },
      { new: true },
    ).lean()) ?? (await Invoice.findById(invoice._id).lean());
  if (!paid || paid.status !== 'paid') return paid ?? invoice;
  await deps.enqueueAudit(paidEvent(paid));
  if (paid.documentStatus === 'pending') {
    try {
      await deps.enqueueRender(paid._id, paid.documentVersion);
    } catch (error) {
      deps.logger.warn({ invoiceId: paid._id, err: error }, 'invoice paid but its new document not queued');
    }
  }
  return paid;
}

/** `invoice.paid`: an uncollectible invoice collected later (under an id fixed by the invoice: sent once). */
export function paidEvent(invoice: InvoiceRecord): AuditEventInput {
  return {
    eventId: transitionEventId('invoice.paid', invoice._id),
    companyId: invoice.companyId,
    ...(invoice.officeId ? { officeId: invoice.officeId } : {}),
    action: 'invoice.paid',
    outcome: 'success',
    actor: ACTOR,
    resource: { type: invoice.kind, id: invoice._id },
    changes: [
      { field: 'status', before: 'uncollectible', after: 'paid' },
      { field: 'amountPaid', before: '0', after: String(invoice.amountPaid) },
    ],
    occurredAt: (invoice.paidAt ?? new Date()).toISOString(),
  };
}

/** The invoice of a succeeded one-off payment (a subscription's payments are invoiced with their period). */
export async function invoicePayment(
  deps: IssueInvoiceDeps,
  payment: PaymentRecord,
): Promise<InvoiceRecord | undefined> {
  if (payment.status !== 'succeeded' || payment.subscription) return undefined;
  const line = serviceLine(payment.serviceCategory);
  const issuedAt = payment.completedAt ?? payment.updatedAt;
  const [customerRef, company] = await Promise.all([
    payerReferenceOf(deps, payment),
    oneOffSettingsOf(deps, payment.companyId),
  ]);
  return issue(
    deps,
    {
      _id: invoiceIdFor({ type: 'payment', id: payment._id }),
      companyId: payment.companyId,
      ...(payment.officeId ? { officeId: payment.officeId } : {}),
      kind: 'invoice',
      status: 'draft',
      source: { type: 'payment', id: payment._id },
      settleAs: 'paid',
      customerRef,
      paymentId: payment._id,
      currency: payment.currency,
      lines: [{ ...line, quantity: 1, unitAmount: payment.amount, amount: payment.amount }],
      subtotal: payment.amount,
      total: payment.amount,
      amountPaid: payment.amount,
      amountDue: 0,
      issuedAt,
      timeZone: company.timeZone,
      paidAt: issuedAt,
      documentStatus: 'pending',
    },
    company.numberPrefix,
  );
}

/**
 * The credit note of a succeeded refund of an invoiced payment (its own sequence and document), naming the invoice it
 * credits. A payment without an invoice gets none.
 */
export async function creditRefund(deps: IssueInvoiceDeps, refund: RefundRecord): Promise<InvoiceRecord | undefined> {
  if (refund.status !== 'succeeded') return undefined;
  return creditPayment(deps, {
    _id: creditNoteIdFor(refund._id),
    companyId: refund.companyId,
    paymentId: refund.paymentId,
    source: { type: 'refund', id: refund._id },
    refundId: refund._id,
    amount: refund.amount,
    currency: refund.currency,
    at: refund.completedAt ?? refund.updatedAt,
  });
}

/** Money that went back to the payer without a refund of ours: a refund made in the Stripe dashboard, a lost dispute. */
export interface MoneyReturned {
  companyId: string;
  paymentId: string;
  source: { type: 'gateway_refund' | 'dispute'; id: string };
  amount: number;
  currency: string;
  at: Date;
}

/** Its credit note (docs/billing-rules.md: every refund, ours or not, and every lost dispute is on exactly one). */
export function creditReturnedMoney(
  deps: IssueInvoiceDeps,
  returned: MoneyReturned,
): Promise<InvoiceRecord | undefined> {
  return creditPayment(deps, { ...returned, _id: returnCreditNoteIdFor(returned.source) });
}

async function creditPayment(
  deps: IssueInvoiceDeps,
  credit: {
    _id: string;
    companyId: string;
    paymentId: string;
    source: InvoiceRecord['source'];
    refundId?: string;
    amount: number;
    currency: string;
    at: Date;
  },
): Promise<InvoiceRecord | undefined> {
  if (credit.amount <= 0) return undefined;
  const payment = await deps.models.Payment.findById(credit.paymentId, { subscription: 1 }).lean();
  if (!payment) return undefined;
  const invoiceId = payment.subscription
    ? invoiceIdFor({ type: 'subscription_period', id: payment.subscription.periodId })
    : invoiceIdFor({ type: 'payment', id: payment._id });
  const invoice = await deps.models.Invoice.findOne({ _id: invoiceId, companyId: credit.companyId }).lean();
  if (!invoice) return undefined;
  const credited = invoice.lines[0];
  return issue(deps, {
    _id: credit._id,
    companyId: credit.companyId,
    ...(invoice.officeId ? { officeId: invoice.officeId } : {}),
    kind: 'credit_note',
    status: 'draft',
    source: credit.source,
    // A credit note is paid once its money reached the payer, which is when it is issued.
    settleAs: 'paid',
    customerRef: invoice.customerRef,
    ...(invoice.subscriptionId ? { subscriptionId: invoice.subscriptionId } : {}),
    paymentId: payment._id,
    ...(credit.refundId ? { refundId: credit.refundId } : {}),
    creditsInvoiceId: invoice._id,
    currency: credit.currency,
    lines: [
      {
        code: credited?.code ?? 'other_services',
        description: credited?.description ?? serviceLine(undefined).description,
        quantity: 1,
        unitAmount: credit.amount,
        amount: credit.amount,
      },
    ],
    subtotal: credit.amount,
    total: credit.amount,
    amountPaid: credit.amount,
    amountDue: 0,
    ...(invoice.period ? { period: invoice.period } : {}),
    issuedAt: credit.at,
    timeZone: invoice.timeZone,
    paidAt: credit.at,
    documentStatus: 'pending',
  });
}

/**
 * A refund that failed after it had succeeded (the card network could not return the money): the money did not go
 * back, so its credit note is voided; its number stays used.
 */
export async function voidCreditOfFailedRefund(deps: IssueInvoiceDeps, refund: RefundRecord): Promise<void> {
  if (refund.status !== 'failed') return;
  await voidDocument(
    deps,
    { invoiceId: creditNoteIdFor(refund._id), companyId: refund.companyId },
    ['paid'],
    (note, before, at) => voidedEvent(note, before, at, ACTOR, 'refund_failed'),
  );
}

/**
 * A one-off payment names the payer by Stripe's `cus_…` id; their subscriptions and payer profile by the upstream's
 * reference. The Customer we made for that reference (found by its deterministic ciphertext) gives the reference back,
 * so one payer is invoiced under one reference. A Customer made elsewhere (or recorded before) keeps its `cus_…`.
 */
async function payerReferenceOf(deps: IssueInvoiceDeps, payment: PaymentRecord): Promise<string> {
  if (!deps.encryption) return payment.customer;
  // Encrypted first whatever the cache holds: a shredded company's key is gone, and this fails as it did.
  const key = await deps.encryption.encrypt(payment.companyId, payment.customer, 'deterministic');
  const find = async () =>
    (
      await driverCollection<StripeCustomerRecord>(deps.models.StripeCustomer).findOne(
        { companyId: payment.companyId, stripeCustomerKey: key },
        { projection: { customerRef: 1 } },
      )
    )?.customerRef;
  const found = deps.settings
    ? await deps.settings.payerReference(payment.companyId, payment.customer, find)
    : await find();
  return found ?? payment.customer;
}

/**
 * The company's time zone for a one-off document: its billing settings' (the one its subscriptions bill in), else the
 * one its invoice settings name, else UTC; and its number prefix (read with it: one read of the invoice settings).
 */
async function oneOffSettingsOf(
  deps: Pick<IssueInvoiceDeps, 'models' | 'settings'>,
  companyId: string,
): Promise<{ timeZone: string; numberPrefix: string }> {
  const { settings } = deps;
  const [billing, invoicing] = await Promise.all(
    settings
      ? [settings.billingSettings(companyId), settings.invoiceSettings(companyId)]
      : [
          deps.models.BillingSettings.findById(companyId, { timeZone: 1 }).lean(),
          deps.models.InvoiceSettings.findById(invoiceSettingsId(companyId), { timeZone: 1, numberPrefix: 1 }).lean(),
        ],
  );
  return {
    timeZone: billing?.timeZone ?? invoicing?.timeZone ?? 'UTC',
    numberPrefix: invoicing?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX,
  };
}

/** A document whose amounts do not hold (docs/billing-rules.md): refused before anything is numbered. */
export class InvoiceAmountsError extends Error {
  override readonly name = 'InvoiceAmountsError';
  constructor(
    readonly invoiceId: string,
    readonly problem: string,
  ) {
    super(`invoice ${invoiceId} not issued: ${problem}`);
  }
}

/**
 * Issues a document in two writes: its number first (the next place in the company's sequence for its kind, a
 * sequenced append keyed by the document's id: the same number however often this runs), then the document itself,
 * inserted already numbered and settled under its id. A run that stops between the two leaves the number taken by a
 * document not yet stored; whatever issues it again (the job's retry, the settled-sources sweep) gets that same
 * number, so the sequence has no gap once it is issued and never a duplicate. A document stored before (a retry, a
 * racing run) is the one kept; a draft left by an older version is finalized. Then its rendering is queued.
 */
async function issue(deps: IssueInvoiceDeps, draft: Draft, numberPrefix?: string): Promise<InvoiceRecord> {
  const { Invoice } = deps.models;
  // Nothing is numbered that does not add up (a bug upstream, not an outage: retrying cannot fix it).
  const problem = invoiceAmountsProblem(draft.lines, draft);
  if (problem !== undefined) throw new InvoiceAmountsError(draft._id, problem);
  const sequence = await deps.numbering.assign(draft.companyId, draft.kind, draft._id);
  const prefix = numberPrefix ?? (await numberPrefixOf(deps, draft.companyId));
  const now = new Date();
  const finalized: InvoiceRecord = {
    ...draft,
    status: draft.settleAs,
    number: formatDocumentNumber(draft.kind, prefix, yearIn(draft.issuedAt, draft.timeZone), sequence),
    sequence,
    finalizedAt: now,
    createdAt: now,
    updatedAt: now,
  };
  // Rendered here when this process can (its PDF stored before the record, so the record is written once, naming it).
  const rendered = await renderBeforeInsert(deps, finalized);
  let invoice: InvoiceRecord | null = rendered
    ? { ...finalized, documentStatus: 'stored', document: rendered.document }
    : finalized;
  try {
    await Invoice.insertMany([invoice], { lean: true });
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
    invoice = await Invoice.findById(draft._id).lean();
    if (!invoice) throw error;
  }
  // Sends `finalized` (under its fixed id); numbers a draft left by an older version.
  invoice = await finalizeInvoice(deps, invoice);
  // Its document recorded with it: `rendered` now (again on a retry, under its fixed id: recorded once).
  if (rendered && invoice.document?.storedSha256 === rendered.document.storedSha256) {
    await deps.enqueueAudit(renderedEvent(invoice, invoice.document, rendered.phiLevel));
  }
  if (invoice.documentStatus === 'pending') {
    try {
      // `finalized` went to the audit sink above (finalizeInvoice): the render job need not send it again.
      await deps.enqueueRender(invoice._id, undefined, invoice.number !== undefined);
    } catch (error) {
      // Finalized and recorded: the outbox sweep queues a document left pending.
      deps.logger.warn({ invoiceId: invoice._id, err: error }, 'invoice finalized but not queued for rendering');
    }
  }
  return invoice;
}

/** The PDF of a document being issued, when this process renders (`renderNow`); a failure leaves it to its job. */
async function renderBeforeInsert(deps: IssueInvoiceDeps, invoice: InvoiceRecord) {
  if (!deps.renderNow) return undefined;
  try {
    return await deps.renderNow(invoice);
  } catch (error) {
    deps.logger.warn({ invoiceId: invoice._id, err: error }, 'invoice not rendered at issue; its render job will');
    return undefined;
  }
}

async function numberPrefixOf(deps: Pick<IssueInvoiceDeps, 'models' | 'settings'>, companyId: string): Promise<string> {
  const settings = deps.settings
    ? await deps.settings.invoiceSettings(companyId)
    : await deps.models.InvoiceSettings.findById(invoiceSettingsId(companyId), { numberPrefix: 1 }).lean();
  return settings?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX;
}

/**
 * Finalizes a draft: its number is the next place in the company's sequence for its kind (a sequenced append under a
 * unique index: no gap, no duplicate, whatever races), printed with the company's prefix and the year it was issued;
 * then it moves to where its source took it (paid, uncollectible). Every write is conditional and writes what any
 * racing writer would, so a retry or a concurrent finalization is harmless; `invoice.finalized` (or
 * `credit_note.finalized`) is sent under an id fixed by the document.
 */
export async function finalizeInvoice(
  deps: Pick<IssueInvoiceDeps, 'models' | 'numbering' | 'enqueueAudit' | 'settings'>,
  invoice: InvoiceRecord,
): Promise<InvoiceRecord> {
  const { Invoice } = deps.models;
  let current = invoice;
  if (current.status === 'draft') {
    const sequence = await deps.numbering.assign(current.companyId, current.kind, current._id);
    const prefix = await numberPrefixOf(deps, current.companyId);
    const number = formatDocumentNumber(current.kind, prefix, yearIn(current.issuedAt, current.timeZone), sequence);
    // Numbered and settled in one write (open is where it passes through, never where it waits).
    current =
      (await Invoice.findOneAndUpdate(
        { _id: current._id, status: 'draft' },
        { $set: { status: current.settleAs, number, sequence, finalizedAt: new Date() } },
        { new: true },
      ).lean()) ??
      (await Invoice.findById(current._id).lean()) ??
      current;
  }
  if (current.status === 'open' && current.settleAs !== 'open') {
    current =
      (await Invoice.findOneAndUpdate(
        { _id: current._id, status: 'open' },
        { $set: { status: current.settleAs } },
        { new: true },
      ).lean()) ?? current;
  }
  if (current.number) await deps.enqueueAudit(finalizedEvent(current));
  return current;
}

type DocumentEvent = 'finalized' | 'rendered' | 'downloaded' | 'integrity_failed' | 'voided';

const DOCUMENT_ACTIONS: Readonly<Record<DocumentKind, Readonly<Record<DocumentEvent, AuditAction>>>> = {
  invoice: {
    finalized: 'invoice.finalized',
    rendered: 'invoice.rendered',
    downloaded: 'invoice.downloaded',
    integrity_failed: 'invoice.integrity_failed',
    voided: 'invoice.voided',
  },
  credit_note: {
    finalized: 'credit_note.finalized',
    rendered: 'credit_note.rendered',
    downloaded: 'credit_note.downloaded',
    integrity_failed: 'credit_note.integrity_failed',
    voided: 'credit_note.voided',
  },
};

/** The audit action of something that happened to a document of this kind. */
export function documentAction(kind: DocumentKind, what: DocumentEvent): AuditAction {
  return DOCUMENT_ACTIONS[kind][what];
}

/** An event about a document (finalized, rendered, voided), under an id fixed by the document and the event. */
export function documentEvent(
  invoice: Pick<InvoiceRecord, '_id' | 'kind' | 'companyId' | 'officeId'>,
  what: 'finalized' | 'rendered' | 'voided',
  changes: NonNullable<AuditEventInput['changes']>,
  at: Date,
  actor: AuditEventInput['actor'] = ACTOR,
): AuditEventInput {
  const action = documentAction(invoice.kind, what);
  return {
    eventId: transitionEventId(action, invoice._id),
    companyId: invoice.companyId,
    ...(invoice.officeId ? { officeId: invoice.officeId } : {}),
    action,
    outcome: 'success',
    actor,
    resource: { type: invoice.kind, id: invoice._id },
    changes,
    occurredAt: at.toISOString(),
  };
}

/** `rendered`: the document stored, with the PHI level it was rendered at. */
export function renderedEvent(
  invoice: InvoiceRecord,
  document: StoredDocumentRef,
  phiLevel: string,
  actor: AuditEventInput['actor'] = ACTOR,
): AuditEventInput {
  const changes = [
    { field: 'document.sha256', before: null, after: document.sha256 },
    { field: 'phiLevel', before: null, after: phiLevel },
  ];
  return documentEvent(invoice, 'rendered', changes, document.renderedAt, actor);
}

function finalizedEvent(invoice: InvoiceRecord): AuditEventInput {
  const changes = [
    { field: 'number', before: null, after: invoice.number ?? null },
    { field: 'status', before: 'draft', after: invoice.settleAs },
    { field: 'total', before: null, after: String(invoice.total) },
  ];
  return documentEvent(invoice, 'finalized', changes, invoice.finalizedAt ?? new Date());
}
