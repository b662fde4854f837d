import type { AuditEventInput } from '../../domain/audit-event';
import type { InvoiceStatus } from '../../domain/invoice';
import type { InvoiceRecord } from '../../models/invoice.model';
import { pendingAuditPath, pendingAuditSet } from '../../models/pending-audit';
import { documentEvent, type IssueInvoiceDeps } from './issue-invoice';

export type VoidDeps = Pick<IssueInvoiceDeps, 'models' | 'enqueueAudit' | 'flushAudit' | 'enqueueRender' | 'logger'>;

/** What voiding came to: `voided` (now, or by an earlier call), or `not_voidable` (its status, which stays). */
export type VoidOutcome =
  | { outcome: 'voided'; invoice: InvoiceRecord }
  | { outcome: 'not_voidable'; status: InvoiceStatus }
  | { outcome: 'not_found' };

/**
 * Voids a finalized document whose status is one of `from` (an open or uncollectible invoice on request, as Stripe
 * allows; a credit note whose refund failed after it had succeeded: the money did not go back). Its number stays used
 * (the sequence never reuses it); its amounts stay as issued; a new version of its document is rendered with the VOID
 * stamp (the one before stays stored). One conditional write: a second call, or a racing one, finds it void.
 * The event (`invoice.voided` / `credit_note.voided`, its id fixed by the document) is built before the write and
 * stored with it; `event` gives a request's caller event (sealed context) or the system's.
 */
export async function voidDocument(
  deps: VoidDeps,
  target: { invoiceId: string; companyId: string },
  from: readonly InvoiceStatus[],
  event: (invoice: InvoiceRecord, before: InvoiceStatus, at: Date) => Promise<AuditEventInput> | AuditEventInput,
  at: Date = new Date(),
): Promise<VoidOutcome> {
  const { Invoice } = deps.models;
  const current = await Invoice.findOne({ _id: target.invoiceId, companyId: target.companyId }).lean();
  if (!current) return { outcome: 'not_found' };
  if (current.status === 'void') return { outcome: 'voided', invoice: current };
  if (!from.includes(current.status) || !current.number) return { outcome: 'not_voidable', status: current.status };
  // The event is stored with the change (models/pending-audit.ts): a crash or a Redis outage loses neither.
  const audit = await event(current, current.status, at);
  const key = `void_${current._id}`;
  const voided = await Invoice.findOneAndUpdate(
    { _id: current._id, status: current.status },
    {
      $set: {
        status: 'void',
        voidedAt: at,
        documentVersion: (current.documentVersion ?? 1) + 1,
        documentStatus: 'pending',
        ...pendingAuditSet({ key, events: [audit] }),
      },
      $unset: { document: 1 },
    },
    { new: true },
  ).lean();
  if (!voided) {
    // Someone else moved it first: void (their event), or something else (not voidable now).
    const now = await Invoice.findById(current._id).lean();
    return now?.status === 'void'
      ? { outcome: 'voided', invoice: now }
      : { outcome: 'not_voidable', status: now?.status ?? current.status };
  }
  try {
    await deps.enqueueRender(voided._id, voided.documentVersion);
  } catch (error) {
    // Recorded: the outbox sweep queues a document left pending.
    deps.logger.warn({ invoiceId: voided._id, err: error }, 'document voided but its new version not queued');
  }
  // Throws when the queue does not take it: the void stands with its event, which the sweep sends.
  await deps.enqueueAudit(audit);
  // Collected into a batch (a renewal's), it is queued now: the stored copy is cleared only once the queue has it.
  await deps.flushAudit?.();
  await Invoice.updateOne({ _id: voided._id }, { $unset: { [pendingAuditPath(key)]: 1 } });
  return { outcome: 'voided', invoice: voided };
}

/** The event of a voided document, under an id fixed by it (sent once, whoever sends it). */
export function voidedEvent(
  invoice: InvoiceRecord,
  before: InvoiceStatus,
  at: Date,
  actor: AuditEventInput['actor'],
  reason: string,
): AuditEventInput {
  return {
    ...documentEvent(invoice, 'voided', [{ field: 'status', before, after: 'void' }], at, actor),
    reason,
  };
}
