import { creditNoteIdFor, invoiceIdFor } from '../../domain/invoice-number';
import type { Models } from '../../models';
import { creditRefund, invoicePayment, invoicePeriod, type IssueInvoiceDeps } from './issue-invoice';

export interface InvoiceSettledDeps extends IssueInvoiceDeps {
  models: IssueInvoiceDeps['models'] & Pick<Models, 'SubscriptionPeriod' | 'Refund' | 'Company' | 'SweepMark'>;
}

const MARK = 'settled-without-invoice';
const BATCH = 500;

/**
 * The sweep behind the invoicing hooks: a succeeded one-off payment, a paid or uncollectible period (with something
 * to bill) and a succeeded refund of an invoiced payment each have their document, even when the process that settled
 * them stopped before its hook ran or the hook failed. It reads only what settled since its last run (a mark on
 * `updatedAt`, up to `cutoff`), asks which documents exist, and issues the missing ones (idempotent: a document's id
 * derives from its source). Nothing is written on the money records themselves. A failure is logged and the mark
 * stays, so the next run tries again.
 */
export async function invoiceSettledSources(
  deps: InvoiceSettledDeps,
  cutoff: Date,
): Promise<{ examined: number; requeued: number; failed: number }> {
  const { Payment, SubscriptionPeriod, Refund, Invoice, Company, SweepMark } = deps.models;
  const from = (await SweepMark.findById(MARK).lean())?.upTo ?? new Date(0);
  const result = { examined: 0, requeued: 0, failed: 0 };
  if (cutoff <= from) return result;
  const changed = { updatedAt: { $gt: from, $lte: cutoff } };
  const [payments, periods, refunds] = await Promise.all([
    Payment.find({ status: 'succeeded', subscription: { $exists: false }, ...changed })
      .sort({ updatedAt: 1 })
      .limit(BATCH)
      .lean(),
    SubscriptionPeriod.find({ status: { $in: ['paid', 'uncollectible'] }, amount: { $gt: 0 }, ...changed })
      .sort({ updatedAt: 1 })
      .limit(BATCH)
      .lean(),
    Refund.find({ status: 'succeeded', ...changed })
      .sort({ updatedAt: 1 })
      .limit(BATCH)
      .lean(),
  ]);
  // Read in full only up to the earliest cut-off batch: the rest is the next run's.
  const lastOf = (rows: Array<{ updatedAt: Date }>) => (rows.length === BATCH ? rows.at(-1)!.updatedAt : cutoff);
  const upTo = new Date(Math.min(lastOf(payments).getTime(), lastOf(periods).getTime(), lastOf(refunds).getTime()));
  const within = <T extends { updatedAt: Date }>(rows: T[]) => rows.filter((row) => row.updatedAt <= upTo);

  const work: Array<{ id: string; companyId: string; issue: () => Promise<unknown> }> = [
    ...within(payments).map((payment) => ({
      id: invoiceIdFor({ type: 'payment', id: payment._id }),
      companyId: payment.companyId,
      issue: () => invoicePayment(deps, payment),
    })),
    ...within(periods).map((period) => ({
      id: invoiceIdFor({ type: 'subscription_period', id: period._id }),
      companyId: period.companyId,
      issue: () => invoicePeriod(deps, period, period.status === 'paid' ? 'paid' : 'uncollectible', period.updatedAt),
    })),
    // After the invoices above: a refund's credit note needs its payment's invoice.
    ...within(refunds).map((refund) => ({
      id: creditNoteIdFor(refund._id),
      companyId: refund.companyId,
      issue: () => creditRefund(deps, refund),
    })),
  ];
  result.examined = work.length;
  // Issued already, unless a paid period's invoice still says uncollectible (collected later: it moves to paid).
  const paidPeriods = new Set(
    within(periods)
      .filter((period) => period.status === 'paid')
      .map((period) => invoiceIdFor({ type: 'subscription_period', id: period._id })),
  );
  const existing = new Set(
    (await Invoice.find({ _id: { $in: work.map((item) => item.id) } }, { _id: 1, status: 1 }).lean())
      .filter((doc) => !(doc.status === 'uncollectible' && paidPeriods.has(doc._id)))
      .map((doc) => doc._id),
  );
  const missing = work.filter((item) => !existing.has(item.id));
  const shredded = new Set(
    missing.length === 0
      ? []
      : (
          await Company.find(
            { _id: { $in: [...new Set(missing.map((item) => item.companyId))] }, shreddedAt: { $exists: true } },
            { _id: 1 },
          ).lean()
        ).map((company) => company._id),
  );
  for (const item of missing) {
    if (shredded.has(item.companyId)) continue;
    try {
      if (await item.issue()) result.requeued += 1;
    } catch (error) {
      result.failed += 1;
      deps.logger.warn({ invoiceId: item.id, err: error }, 'could not issue a missing invoice');
    }
  }
  if (result.failed === 0) await SweepMark.updateOne({ _id: MARK }, { $set: { upTo } }, { upsert: true });
  if (result.requeued > 0) deps.logger.info({ issued: result.requeued }, 'issued invoices their settling missed');
  return result;
}
