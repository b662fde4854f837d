/**
 * Invoices and credit notes: what they are, and the one shape a document is rendered from. Pure types and rules; the
 * minimizing function (domain/invoice-view.ts) turns a stored invoice and its payer into an `InvoiceView`, which is all
 * the renderer ever sees.
 */

/** As Stripe users know them: numbers are assigned when a draft is finalized (open), never to drafts. */
export const INVOICE_STATUSES = ['draft', 'open', 'paid', 'void', 'uncollectible'] as const;
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number];

export const DOCUMENT_KINDS = ['invoice', 'credit_note'] as const;
export type DocumentKind = (typeof DOCUMENT_KINDS)[number];

/**
 * How much about the payer a company's (or office's) documents show. `minimal` (the default): an opaque account number
 * derived from the payer reference with the company's key (never the reference itself, which an upstream may have
 * filled with a record number). `standard`: also the payer's name and billing address. At no level: anything clinical, dates of
 * birth, member or record numbers, notes, appointment details, email.
 */
export const PHI_LEVELS = ['minimal', 'standard'] as const;
export type PhiLevel = (typeof PHI_LEVELS)[number];

/** A postal address as printed: up to four lines, each short plain text. */
export type AddressLines = string[];

/** Who sends the document: the company's, or the office's, letterhead. */
export interface Letterhead {
  name: string;
  address: AddressLines;
}

/** One line of a document, from the company's catalog of generic service categories (never free text). */
export interface ViewLine {
  /** The catalog's wording, e.g. "Office visit", "Membership — monthly". */
  description: string;
  quantity: number;
  /** Minor units. */
  unitAmount: number;
  amount: number;
}

/**
 * Everything a rendered invoice or credit note shows, and nothing else: the renderer's input type has no field that
 * could carry anything more, so a payer record holding extra fields (an upstream app's mistake) renders nothing extra.
 * Dates are calendar dates (YYYY-MM-DD) in the company's time zone; amounts are minor units of `currency`.
 */
export interface InvoiceView {
  kind: DocumentKind;
  /** e.g. DFP-2026-000123 (credit notes have their own sequence, e.g. DFP-CN-2026-000004). */
  number: string;
  status: Exclude<InvoiceStatus, 'draft'>;
  issuedOn: string;
  dueOn?: string;
  /** A subscription period's dates, for an invoice of one. */
  period?: { start: string; end: string };
  from: Letterhead;
  billTo: {
    /** The payer's opaque account number (ACCT-XXXX-XXXX-XXXX), never the upstream's payer reference: always. */
    reference: string;
    /** `standard` level only. */
    name?: string;
    address?: AddressLines;
  };
  lines: ViewLine[];
  currency: string;
  subtotal: number;
  total: number;
  amountPaid: number;
  amountDue: number;
  /** How it was paid: card brand and last four digits only. */
  payment?: { brand: string; last4: string; paidOn: string };
  /** A credit note names the invoice it credits. */
  creditsInvoice?: string;
  footer: string;
}

/**
 * Why a document's amounts cannot be issued or printed (docs/billing-rules.md: totals equal the sum of their lines; no
 * line and no total is negative), or undefined when they hold: each line is its quantity times its unit amount, the
 * lines add up to the subtotal, the total is the subtotal (no tax or discount is modelled), paid and due make the total.
 */
export function invoiceAmountsProblem(
  lines: readonly Pick<ViewLine, 'quantity' | 'unitAmount' | 'amount'>[],
  amounts: { subtotal: number; total: number; amountPaid: number; amountDue: number },
): string | undefined {
  if (lines.length === 0) return 'a document has at least one line';
  for (const [i, line] of lines.entries()) {
    if (line.amount < 0 || line.unitAmount < 0) return `line ${i + 1} is negative`;
    if (line.amount !== Math.round(line.quantity * line.unitAmount)) {
      return `line ${i + 1}: amount is not quantity × unit amount`;
    }
  }
  for (const [name, value] of Object.entries(amounts)) if (value < 0) return `${name} is negative`;
  const sum = lines.reduce((total, line) => total + line.amount, 0);
  if (sum !== amounts.subtotal) return 'the lines do not add up to the subtotal';
  if (amounts.total !== amounts.subtotal) return 'the total is not the subtotal';
  if (amounts.amountPaid + amounts.amountDue !== amounts.total)
    return 'amount paid and amount due do not make the total';
  return undefined;
}
