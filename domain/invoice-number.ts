import { createHash } from 'node:crypto';
import { DateTime } from 'luxon';
import type { DocumentKind } from './invoice';

/**
 * Invoice and credit note ids and numbers. A document's id derives from its source (a subscription period, a payment,
 * a refund), so whoever issues it (the worker that saw the payment, a retry, the sweep) issues the same one. Its
 * number is assigned once, at finalization: the next place in the company's sequence for that kind (one sequence per
 * company for invoices, another for credit notes; never reset), printed with the prefix and the year of issue.
 */
/**
 * What a document is issued for: a period or a one-off payment (invoices); our refund, a refund made outside this API
 * (the Stripe dashboard: `gateway_refund`, by Stripe's refund id) or a lost dispute (`dispute`) (credit notes).
 */
export const INVOICE_SOURCE_TYPES = ['subscription_period', 'payment', 'refund', 'gateway_refund', 'dispute'] as const;
export type InvoiceSourceType = (typeof INVOICE_SOURCE_TYPES)[number];

export const INVOICE_ID = /^inv_[0-9a-f]{32}$/;
export const CREDIT_NOTE_ID = /^cn_[0-9a-f]{32}$/;

/** A prefix companies choose: upper-case letters and digits, optionally two parts ("DFP", "DFP-EAST"). */
export const INVOICE_NUMBER_PREFIX = /^[A-Z0-9]{1,10}(?:-[A-Z0-9]{1,10})?$/;
export const DEFAULT_INVOICE_NUMBER_PREFIX = 'INV';

function digest(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 32);
}

/** The invoice of a subscription period or of a one-off payment. */
export function invoiceIdFor(source: { type: 'subscription_period' | 'payment'; id: string }): string {
  return `inv_${digest(`${source.type}|${source.id}`)}`;
}

/** The credit note of a refund. */
export function creditNoteIdFor(refundId: string): string {
  return `cn_${digest(`refund|${refundId}`)}`;
}

/** The credit note of money that went back without a refund of ours: a dashboard refund (`re_…`), a lost dispute. */
export function returnCreditNoteIdFor(source: { type: 'gateway_refund' | 'dispute'; id: string }): string {
  return `cn_${digest(`${source.type}|${source.id}`)}`;
}

export function documentKindOf(id: string): DocumentKind | undefined {
  if (INVOICE_ID.test(id)) return 'invoice';
  if (CREDIT_NOTE_ID.test(id)) return 'credit_note';
  return undefined;
}

/** The sequence a document's number is taken from: per company and kind. */
export function numberingKey(companyId: string, kind: DocumentKind): string {
  return `${companyId}|${kind}`;
}

/** DFP-2026-000123; credit notes DFP-CN-2026-000004. Six digits at least (more once a company passes 999,999). */
export function formatDocumentNumber(kind: DocumentKind, prefix: string, year: number, sequence: number): string {
  const place = String(sequence).padStart(6, '0');
  return kind === 'invoice' ? `${prefix}-${year}-${place}` : `${prefix}-CN-${year}-${place}`;
}

/** The calendar year of `at` in the company's time zone (an invoice issued at 23:30 on Dec 31 in Chicago is that year's). */
export function yearIn(at: Date, timeZone: string): number {
  return DateTime.fromJSDate(at, { zone: timeZone }).year;
}

/** YYYY-MM-DD of `at` in the company's time zone. */
export function calendarDate(at: Date, timeZone: string): string {
  return DateTime.fromJSDate(at, { zone: timeZone }).toISODate() ?? at.toISOString().slice(0, 10);
}
