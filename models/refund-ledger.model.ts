import { Schema, type Connection, type Model } from 'mongoose';
import { refundLedgerEffect, type RefundStatus } from '../domain/refund-status';
import type { RefundModel } from './refund.model';
import { SequencedAppender } from './sequenced-append';

/**
 * The refund money of each payment, as an append-only chain of entries
 * (`seq` 1, 2, 3… per payment), each carrying the totals after it.
 *
 * Why a chain and not counters on the payment: a conditional update
 * (`{reserved: {$lte: bound}}` + `$inc`) is atomic on MongoDB, but not on
 * every MongoDB-wire server — FerretDB applies concurrent updates of one
 * document as read-modify-write and loses some of them. An insert under a
 * unique key is atomic everywhere: an entry is appended at `head.seq + 1`
 * after deciding on the head, and if another request appended first, the
 * insert fails and the decision is taken again on the new head. So the
 * reserved total can never pass the payment's amount, however many requests
 * race, on any server the system runs on.
 */
export const LEDGER_ENTRY_KINDS = ['hold', 'confirm', 'release', 'report'] as const;
export type LedgerEntryKind = (typeof LEDGER_ENTRY_KINDS)[number];

export interface RefundTotals {
  /** Held by our refunds in flight or succeeded. */
  reserved: number;
  /** Confirmed by Stripe: our succeeded refunds. */
  refunded: number;
  /** Stripe's `amount_refunded` from the newest `charge.refunded`: refunds made outside this API included. */
  gatewayRefunded?: number;
  /** When Stripe created the event that reported it. */
  gatewayReportedAt?: Date;
}

export interface RefundLedgerEntry extends RefundTotals {
  /** `<payment id>.<seq, 9 digits>`: two entries can never take the same place in a payment's chain. */
  _id: string;
  paymentId: string;
  companyId: string;
  seq: number;
  /**
   * hold: a refund reserves its amount; confirm: Stripe refunded it; release: Stripe failed or canceled it (or
   * its request never wrote the refund), giving the hold back; report: Stripe's total refunded on the charge.
   */
  kind: LedgerEntryKind;
  /** The refund id, or for a report the audit key of the Stripe event. */
  subject: string;
  /** Per subject and kind: 0 for the first hold, 1 for a hold taken again after a release… */
  n: number;
  /** The refund's amount, or Stripe's amount_refunded for a report. */
  amount: number;
  /** For a report: Stripe's total before it. */
  previous?: number;
  /** A hold whose refund record its request had not yet written: the outbox sweep releases it if it never is. */
  unrecorded?: boolean;
  createdAt: Date;
}

const ledgerSchema = new Schema<RefundLedgerEntry>(
  {
    _id: { type: String, required: true },
    paymentId: { type: String, required: true },
    companyId: { type: String, required: true },
    seq: { type: Number, required: true, min: 1 },
    kind: { type: String, required: true, enum: LEDGER_ENTRY_KINDS },
    subject: { type: String, required: true },
    n: { type: Number, required: true, min: 0 },
    amount: { type: Number, required: true, min: 0 },
    previous: { type: Number },
    reserved: { type: Number, required: true, min: 0 },
    refunded: { type: Number, required: true, min: 0 },
    gatewayRefunded: { type: Number },
    gatewayReportedAt: { type: Date },
    unrecorded: { type: Boolean },
  },
  { timestamps: { createdAt: true, updatedAt: false }, versionKey: false, collection: 'refund_ledger' },
);
ledgerSchema.index({ paymentId: 1, seq: -1 }, { name: 'payment_seq' });
// A refund holds, confirms or releases once per round; a Stripe event reports once.
ledgerSchema.index({ subject: 1, kind: 1, n: 1 }, { unique: true, name: 'subject_kind_n' });
ledgerSchema.index({ unrecorded: 1, createdAt: 1 }, { name: 'unrecorded_created' });

export type RefundLedgerModel = Model<RefundLedgerEntry>;

export function createRefundLedgerModel(connection: Connection): RefundLedgerModel {
  return connection.model<RefundLedgerEntry>('RefundLedger', ledgerSchema);
}

/** Too many concurrent writers on one payment's ledger: retry later (the request or the job). */
export class LedgerBusyError extends Error {
  constructor(paymentId: string) {
    super(`the refund ledger of payment ${paymentId} is busy`);
    this.name = 'LedgerBusyError';
  }
}

type Head = { sequence: number; totals: RefundTotals };
type Target = { paymentId: string; companyId: string };
type NewEntry = Pick<RefundLedgerEntry, 'kind' | 'n' | 'amount'> &
  Partial<Pick<RefundLedgerEntry, 'previous' | 'unrecorded'>> & { totals: RefundTotals };
type Plan<T> = { done: T } | { append: NewEntry; result: T };

const MAX_ROUNDS = 50;

const entryId = (paymentId: string, seq: number): string => `${paymentId}.${String(seq).padStart(9, '0')}`;

function headOf(entry: RefundLedgerEntry | null): Head {
  if (!entry) return { sequence: 0, totals: { reserved: 0, refunded: 0 } };
  return {
    sequence: entry.seq,
    totals: {
      reserved: entry.reserved,
      refunded: entry.refunded,
      ...(entry.gatewayRefunded !== undefined
        ? { gatewayRefunded: entry.gatewayRefunded, gatewayReportedAt: entry.gatewayReportedAt }
        : {}),
    },
  };
}

const readHead = async (Ledger: RefundLedgerModel, paymentId: string): Promise<Head> =>
  headOf(await Ledger.findOne({ paymentId }).sort({ seq: -1 }).lean());

/**
 * Decides on the current head (and the subject's own entries) and appends at
 * `head.seq + 1`; when another writer took that place first, decides again.
 * The head is read before the subject's entries, so anything appended after
 * the head was read takes the place this insert wants, and makes it retry.
 * No cached head: every decision (over-refund protection above all) is taken
 * on the head as stored, whichever process wrote it.
 */
async function append<T>(
  Ledger: RefundLedgerModel,
  target: Target,
  subject: string,
  plan: (totals: RefundTotals, own: RefundLedgerEntry[]) => Plan<T>,
): Promise<T> {
  const appender = new SequencedAppender<Head>({
    readHead: (paymentId) => readHead(Ledger, paymentId),
    maxAttempts: MAX_ROUNDS,
    busy: (paymentId) => new LedgerBusyError(paymentId),
  });
  return appender.append(target.paymentId, {
    decide: async (head, seq) => {
      const own = await Ledger.find({ paymentId: target.paymentId, subject }).lean();
      const decided = plan(head.totals, own);
      if ('done' in decided) return decided;
      const { totals, ...entry } = decided.append;
      return {
        insert: {
          _id: entryId(target.paymentId, seq),
          paymentId: target.paymentId,
          companyId: target.companyId,
          seq,
          subject,
          ...entry,
          ...totals,
        },
        result: decided.result,
      };
    },
    insert: (entry) => Ledger.create(entry),
  });
}

/** Where a refund stands in the ledger. */
function refundState(own: RefundLedgerEntry[]) {
  const of = (kind: LedgerEntryKind) => own.filter((entry) => entry.kind === kind);
  const holds = of('hold');
  const releases = of('release');
  return {
    held: holds.length > releases.length,
    holds: holds.length,
    releases: releases.length,
    confirmed: of('confirm').length > 0,
    amount: holds[holds.length - 1]?.amount ?? 0,
  };
}

/** The payment's refund totals now. */
export async function refundTotals(Ledger: RefundLedgerModel, paymentId: string): Promise<RefundTotals> {
  return (await readHead(Ledger, paymentId)).totals;
}

/** What is left to refund: the amount less what our refunds hold or Stripe reports refunded, whichever is more. */
export function refundableAmount(paymentAmount: number, totals: RefundTotals): number {
  return Math.max(0, paymentAmount - Math.max(totals.reserved, totals.gatewayRefunded ?? 0));
}

export type HoldResult = 'held' | 'already_held' | 'finished' | 'exceeds';

/**
 * Reserves the refund's amount on a payment, unless that would take our
 * refunds — or what Stripe reports refunded, which includes refunds made in
 * the dashboard — past the payment's amount (which never changes). Holding
 * again what the refund already holds is a no-op; a refund whose hold was
 * released (its request seemed dead) may hold again.
 */
export async function holdRefund(
  Ledger: RefundLedgerModel,
  payment: { _id: string; companyId: string; amount: number },
  refund: { refundId: string; amount: number; unrecorded: boolean },
): Promise<{ result: HoldResult; totals: RefundTotals }> {
  const target = { paymentId: payment._id, companyId: payment.companyId };
  return append<{ result: HoldResult; totals: RefundTotals }>(Ledger, target, refund.refundId, (totals, own) => {
    const state = refundState(own);
    if (state.held) return { done: { result: 'already_held', totals } };
    if (state.confirmed) return { done: { result: 'finished', totals } };
    if (refundableAmount(payment.amount, totals) < refund.amount) return { done: { result: 'exceeds', totals } };
    const next = { ...totals, reserved: totals.reserved + refund.amount };
    return {
      append: {
        kind: 'hold',
        n: state.holds,
        amount: refund.amount,
        ...(refund.unrecorded ? { unrecorded: true } : {}),
        totals: next,
      },
      result: { result: 'held', totals: next },
    };
  });
}

/** Gives a refund's hold back (taking back its confirmation, if Stripe failed it after it succeeded). */
export async function releaseHold(Ledger: RefundLedgerModel, target: Target, refundId: string): Promise<boolean> {
  return append<boolean>(Ledger, target, refundId, (totals, own) => {
    const state = refundState(own);
    if (!state.held) return { done: false };
    return {
      append: {
        kind: 'release',
        n: state.releases,
        amount: state.amount,
        totals: {
          ...totals,
          reserved: totals.reserved - state.amount,
          refunded: totals.refunded - (state.confirmed ? state.amount : 0),
        },
      },
      result: true,
    };
  });
}

/**
 * Brings the ledger in line with the refund's stored status (never an event's
 * claim): a success is confirmed once, a failure or cancelation releases the
 * hold. Idempotent, so the worker, a webhook and a retry of either may all call it.
 */
export async function applyRefundToLedger(
  Ledger: RefundLedgerModel,
  refund: { _id: string; paymentId: string; companyId: string; status: RefundStatus },
): Promise<void> {
  const target = { paymentId: refund.paymentId, companyId: refund.companyId };
  const effect = refundLedgerEffect(refund.status);
  if (effect === 'released') {
    await releaseHold(Ledger, target, refund._id);
  } else if (effect === 'refunded') {
    await append<undefined>(Ledger, target, refund._id, (totals, own) => {
      const state = refundState(own);
      if (!state.held || state.confirmed) return { done: undefined };
      return {
        append: {
          kind: 'confirm',
          n: 0,
          amount: state.amount,
          totals: { ...totals, refunded: totals.refunded + state.amount },
        },
        result: undefined,
      };
    });
  }
}

/** The request wrote its refund record: its hold is no longer the sweep's business. */
export async function markHoldRecorded(Ledger: RefundLedgerModel, refundId: string): Promise<void> {
  await Ledger.updateMany({ subject: refundId, kind: 'hold', unrecorded: true }, { $unset: { unrecorded: 1 } });
}

export type GatewayReportResult =
  { written: true; previous?: number } | { written: false; reason: 'already_in_state' | 'stale_transition' };

/**
 * Records what Stripe reports refunded on the payment's charge, unless the
 * ledger holds a newer report (Stripe delivers out of order: the newer event
 * wins; within the same second the larger amount, as refunds add up).
 * `written`: this event's report is recorded (now, or by an earlier attempt).
 */
export async function recordGatewayReport(
  Ledger: RefundLedgerModel,
  target: Target,
  report: { refunded: number; reportedAt: Date; eventKey: string },
): Promise<GatewayReportResult> {
  return append<GatewayReportResult>(Ledger, target, report.eventKey, (totals, own) => {
    const mine = own.find((entry) => entry.kind === 'report');
    if (mine) return { done: { written: true, ...(mine.previous !== undefined ? { previous: mine.previous } : {}) } };
    if (totals.gatewayReportedAt && totals.gatewayRefunded !== undefined) {
      const storedAt = totals.gatewayReportedAt.getTime();
      const at = report.reportedAt.getTime();
      if (storedAt > at || (storedAt === at && totals.gatewayRefunded >= report.refunded)) {
        const reason = totals.gatewayRefunded === report.refunded ? 'already_in_state' : 'stale_transition';
        return { done: { written: false, reason } };
      }
    }
    return {
      append: {
        kind: 'report',
        n: 0,
        amount: report.refunded,
        ...(totals.gatewayRefunded !== undefined ? { previous: totals.gatewayRefunded } : {}),
        totals: { ...totals, gatewayRefunded: report.refunded, gatewayReportedAt: report.reportedAt },
      },
      result: { written: true, ...(totals.gatewayRefunded !== undefined ? { previous: totals.gatewayRefunded } : {}) },
    };
  });
}

const ORPHAN_BATCH = 200;

/**
 * Holds taken by a request that stopped before writing its refund record (a
 * crash, a lost connection) and was not retried are released once older than
 * `cutoff`; a hold whose record exists is only unmarked. Should a stalled
 * request write its record after all, the refund worker holds again (if the
 * amount still fits) before anything is sent to Stripe.
 */
export async function releaseOrphanedHolds(
  models: { RefundLedger: RefundLedgerModel; Refund: RefundModel },
  cutoff: Date,
): Promise<{ examined: number; released: number }> {
  const holds = await models.RefundLedger.find({ unrecorded: true, createdAt: { $lt: cutoff } })
    .sort({ createdAt: 1 })
    .limit(ORPHAN_BATCH)
    .lean();
  let released = 0;
  for (const hold of holds) {
    if (!(await models.Refund.exists({ _id: hold.subject }))) {
      const target = { paymentId: hold.paymentId, companyId: hold.companyId };
      if (await releaseHold(models.RefundLedger, target, hold.subject)) released += 1;
    }
    await markHoldRecorded(models.RefundLedger, hold.subject);
  }
  return { examined: holds.length, released };
}
