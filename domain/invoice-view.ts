import { DateTime, IANAZone } from 'luxon';
import type { InvoiceStatus, DocumentKind, InvoiceView, Letterhead, PhiLevel, ViewLine } from './invoice';
import { DOCUMENT_KINDS, INVOICE_STATUSES, invoiceAmountsProblem, PHI_LEVELS } from './invoice';
import { isIsoCurrency } from './money';

/**
 * The minimum-necessary view (issue 14): one pure function turns a stored invoice or credit note and its payer into
 * the `InvoiceView` the renderer sees. It builds a new object field by field and reads from the payer record only the
 * fields the PHI level allows, so whatever else an upstream app stored there (dates of birth, diagnoses, member
 * numbers, notes) cannot reach a document.
 */

/** The document as the invoice records hold it: instants, not yet calendar dates. */
export interface InvoiceDocumentInput {
  kind: DocumentKind;
  number: string;
  /** Drafts have no number and are never rendered. */
  status: InvoiceStatus;
  issuedOn: Date;
  dueOn?: Date;
  /** A billing period [start, end) as domain/billing-period.ts computes it: `end` is the next period's start. */
  period?: { start: Date; end: Date };
  lines: readonly ViewLine[];
  /** ISO 4217, any case. */
  currency: string;
  /** Minor units of `currency`. */
  amounts: { subtotal: number; total: number; amountPaid: number; amountDue: number };
  payment?: { brand: string; last4: string; paidAt: Date };
  /** A credit note's invoice number. */
  creditsInvoice?: string;
  /** The company's IANA time zone: dates print as the practice's calendar reads them. */
  timeZone: string;
}

export interface InvoiceViewInput {
  document: InvoiceDocumentInput;
  /**
   * The payer's opaque account number (`payerAccountNumber`): what the document prints to identify the payer. Never
   * the upstream app's payer reference, which an upstream may have filled with a record number (an MRN).
   */
  account: string;
  /** The payer profile as stored, possibly holding more than it should: read here, never copied. */
  payer: unknown;
  phiLevel: PhiLevel;
  letterhead: Letterhead;
  footer?: string;
}

/** The input cannot make a truthful document (bad data, not a transient failure). */
export class InvoiceViewError extends Error {
  override readonly name = 'InvoiceViewError';
}

export const DEFAULT_INVOICE_FOOTER =
  'Please quote the invoice number with any payment or question about this invoice.';

const MAX = {
  number: 40,
  name: 100,
  addressLine: 80,
  addressLines: 4,
  description: 120,
  lines: 500,
  footer: 400,
} as const;

/** Stripe's card brands; anything else prints as a plain "card". */
const CARD_BRAND = /^[a-z][a-z_]{0,23}$/;

export function invoiceView(input: InvoiceViewInput): InvoiceView {
  const { document: doc, phiLevel, letterhead } = input;
  if (!(PHI_LEVELS as readonly string[]).includes(phiLevel)) throw new InvoiceViewError(`unknown PHI level`);
  if (!(DOCUMENT_KINDS as readonly string[]).includes(doc.kind)) throw new InvoiceViewError('unknown document kind');
  if (!(INVOICE_STATUSES as readonly string[]).includes(doc.status)) throw new InvoiceViewError('unknown status');
  if (doc.status === 'draft') throw new InvoiceViewError('a draft has no number and is not rendered');
  // luxon keeps one zone per name (its validity checked once); `isValidZone` would build an Intl formatter per call.
  const zone = typeof doc.timeZone === 'string' ? IANAZone.create(doc.timeZone) : undefined;
  if (!zone?.isValid) throw new InvoiceViewError('time zone must be an IANA zone');
  if (!/^[a-zA-Z]{3}$/.test(doc.currency) || !isIsoCurrency(doc.currency)) {
    throw new InvoiceViewError('currency must be an ISO 4217 code');
  }

  const view: InvoiceView = {
    kind: doc.kind,
    number: requiredText(doc.number, MAX.number, 'number'),
    status: doc.status,
    issuedOn: calendarDate(doc.issuedOn, zone, 'issuedOn'),
    from: {
      name: requiredText(letterhead.name, MAX.name, 'letterhead name'),
      address: addressLines(letterhead.address),
    },
    billTo: billTo(input.account, input.payer, phiLevel),
    lines: viewLines(doc.lines),
    currency: doc.currency.toLowerCase(),
    subtotal: minorUnits(doc.amounts.subtotal, 'subtotal'),
    total: minorUnits(doc.amounts.total, 'total'),
    amountPaid: minorUnits(doc.amounts.amountPaid, 'amountPaid'),
    amountDue: minorUnits(doc.amounts.amountDue, 'amountDue'),
    footer: cleanText(input.footer ?? DEFAULT_INVOICE_FOOTER, MAX.footer),
  };
  const problem = invoiceAmountsProblem(view.lines, view);
  if (problem !== undefined) throw new InvoiceViewError(`amounts do not hold: ${problem}`);
  if (doc.dueOn !== undefined) view.dueOn = calendarDate(doc.dueOn, zone, 'dueOn');
  if (doc.period !== undefined) {
    const { start, end } = doc.period;
    if (!isDate(start) || !isDate(end) || end.getTime() <= start.getTime()) {
      throw new InvoiceViewError('period must have a start before its end');
    }
    // The period's last day is the day before the next period starts, which is what a practice prints.
    view.period = {
      start: calendarDate(start, zone, 'period.start'),
      end: calendarDate(new Date(end.getTime() - 1), zone, 'period.end'),
    };
  }
  if (doc.payment !== undefined) {
    const { brand, last4, paidAt } = doc.payment;
    // Only the last four digits: a longer string here would be a card number.
    if (typeof last4 !== 'string' || !/^\d{4}$/.test(last4)) throw new InvoiceViewError('last4 must be four digits');
    const normalizedBrand = typeof brand === 'string' ? brand.trim().toLowerCase() : '';
    view.payment = {
      brand: CARD_BRAND.test(normalizedBrand) ? normalizedBrand : 'card',
      last4,
      paidOn: calendarDate(paidAt, zone, 'payment.paidAt'),
    };
  }
  if (doc.creditsInvoice !== undefined)
    view.creditsInvoice = requiredText(doc.creditsInvoice, MAX.number, 'creditsInvoice');
  if (view.kind === 'credit_note' && view.creditsInvoice === undefined) {
    throw new InvoiceViewError('a credit note names the invoice it credits');
  }
  return view;
}

/** An opaque account number: `ACCT-` and three groups of four from an alphabet without look-alikes. */
export const PAYER_ACCOUNT_NUMBER = /^ACCT-[0-9A-HJ-NP-Z]{4}-[0-9A-HJ-NP-Z]{4}-[0-9A-HJ-NP-Z]{4}$/;
const ACCOUNT_ALPHABET = '0123456789ABCDEFGHJKLMNPQRSTUVWXYZ';

/**
 * The printed account number of a payer, from a keyed digest of its reference (at least 8 bytes; the application
 * derives it with the company's data key, so it says nothing about the reference to anyone without that key, and
 * nothing at all once the company is shredded): 12 characters of a 34-letter alphabet, about 61 bits.
 */
export function payerAccountNumber(digest: Uint8Array): string {
  if (digest.length < 8) throw new InvoiceViewError('an account number needs at least 8 bytes of digest');
  let value = 0n;
  for (const byte of digest.subarray(0, 8)) value = (value << 8n) | BigInt(byte);
  let chars = '';
  for (let i = 0; i < 12; i++) {
    chars += ACCOUNT_ALPHABET[Number(value % 34n)];
    value /= 34n;
  }
  return `ACCT-${chars.slice(0, 4)}-${chars.slice(4, 8)}-${chars.slice(8, 12)}`;
}

/**
 * The opaque account number always, name and billing address at `standard` only; the payer record's own reference is
 * never read (it may be a medical record number), nor anything else in it.
 */
function billTo(account: string, payer: unknown, level: PhiLevel): InvoiceView['billTo'] {
  if (typeof payer !== 'object' || payer === null) throw new InvoiceViewError('payer record is missing');
  const record = payer as Record<string, unknown>;
  if (typeof account !== 'string' || !PAYER_ACCOUNT_NUMBER.test(account)) {
    throw new InvoiceViewError('the payer is printed by an opaque account number (ACCT-XXXX-XXXX-XXXX)');
  }
  const billTo: InvoiceView['billTo'] = { reference: account };
  if (level === 'standard') {
    const name = typeof record.name === 'string' ? cleanText(record.name, MAX.name) : '';
    if (name !== '') billTo.name = name;
    const address = Array.isArray(record.billingAddress) ? addressLines(record.billingAddress) : [];
    if (address.length > 0) billTo.address = address;
  }
  return billTo;
}

function viewLines(lines: readonly ViewLine[]): ViewLine[] {
  if (!Array.isArray(lines)) throw new InvoiceViewError('lines must be a list');
  if (lines.length > MAX.lines) throw new InvoiceViewError(`at most ${MAX.lines} lines`);
  return lines.map((line, i) => {
    if (typeof line.quantity !== 'number' || !Number.isFinite(line.quantity) || line.quantity <= 0) {
      throw new InvoiceViewError(`line ${i + 1}: quantity must be a positive number`);
    }
    return {
      description: requiredText(line.description, MAX.description, `line ${i + 1} description`),
      quantity: line.quantity,
      unitAmount: minorUnits(line.unitAmount, `line ${i + 1} unitAmount`),
      amount: minorUnits(line.amount, `line ${i + 1} amount`),
    };
  });
}

function addressLines(lines: readonly unknown[]): string[] {
  if (!Array.isArray(lines)) throw new InvoiceViewError('an address is a list of lines');
  return lines
    .filter((line): line is string => typeof line === 'string')
    .map((line) => cleanText(line, MAX.addressLine))
    .filter((line) => line !== '')
    .slice(0, MAX.addressLines);
}

function requiredText(value: unknown, max: number, what: string): string {
  const text = typeof value === 'string' ? cleanText(value, max) : '';
  if (text === '') throw new InvoiceViewError(`${what} is required`);
  return text;
}

/**
 * Plain single-line text: Unicode NFC, control and format characters (line breaks, bidi overrides, zero-width) become
 * spaces, runs of white space collapse, and the result is capped at `max` characters (an ellipsis marks the cut).
 */
export function cleanText(value: string, max: number): string {
  const text = value
    .normalize('NFC')
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  const chars = Array.from(text);
  return chars.length <= max
    ? text
    : `${chars
        .slice(0, max - 1)
        .join('')
        .trimEnd()}…`;
}

function calendarDate(value: Date, zone: IANAZone, what: string): string {
  if (!isDate(value)) throw new InvoiceViewError(`${what} must be a valid date`);
  const date = DateTime.fromJSDate(value, { zone }).toISODate();
  if (date === null) throw new InvoiceViewError(`${what} must be a valid date`);
  return date;
}

function isDate(value: unknown): value is Date {
  return value instanceof Date && !Number.isNaN(value.getTime());
}

function minorUnits(value: number, what: string): number {
  if (!Number.isSafeInteger(value)) throw new InvoiceViewError(`${what} must be an integer amount in minor units`);
  return value;
}
