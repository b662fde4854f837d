import PDFDocument from 'pdfkit';
import type { InvoiceView } from '../domain/invoice';
import { loadDocumentFonts, type DocumentFonts } from './fonts';
import { cardBrandName, formatQuantity, moneyFormatter } from './pdf-format';

/**
 * Renders an `InvoiceView` (and only what it holds) as a US Letter PDF with an embedded Unicode TrueType font (DejaVu
 * Sans, vendored in documents/fonts: a document kept for years looks the same, and names print in Latin, Greek and
 * Cyrillic script). The output is deterministic: metadata dates come from the issue date, PDFKit derives the file ID
 * from that metadata, the font subset is built from the glyphs used, streams are left uncompressed (no zlib version in
 * the bytes), so rendering the same view again reproduces its SHA-256.
 */

const PAGE = { width: 612, height: 792, margin: 54 } as const;
const RIGHT = PAGE.width - PAGE.margin;
const CONTENT_BOTTOM = PAGE.height - 96;
const INK = '#1f2933';
const MUTED = '#5f6b7a';
const RULE = '#cbd2d9';
const ACCENT = '#1d4e89';
const SHADE = '#eef2f6';
const STAMP_COLORS: Record<InvoiceView['status'], string> = {
  open: '#1d4e89',
  paid: '#1e7b45',
  void: '#6b7280',
  uncollectible: '#b42318',
};
/** Table columns: x and width; numbers are right-aligned in theirs. */
const COLUMNS = {
  description: { x: PAGE.margin + 8, width: 280 },
  quantity: { x: 346, width: 40 },
  unit: { x: 394, width: 76 },
  amount: { x: 478, width: RIGHT - 8 - 478 },
} as const;

type Doc = PDFKit.PDFDocument;

export async function renderInvoicePdf(view: InvoiceView, fonts: DocumentFonts = loadDocumentFonts()): Promise<Buffer> {
  const issued = new Date(`${view.issuedOn}T00:00:00Z`);
  if (Number.isNaN(issued.getTime())) throw new Error('issuedOn must be a YYYY-MM-DD date');
  const title = `${view.kind === 'credit_note' ? 'Credit note' : 'Invoice'} ${view.number}`;
  const doc = new PDFDocument({
    size: 'LETTER',
    margins: { top: PAGE.margin, bottom: PAGE.margin, left: PAGE.margin, right: PAGE.margin },
    bufferPages: true,
    compress: false,
    lang: 'en-US',
    displayTitle: true,
    // The document's own font from the start: PDFKit's default (Helvetica) would be parsed for every document, unused.
    font: fonts.regular as unknown as string,
    info: {
      Title: title,
      Author: view.from.name,
      Producer: 'hipaa-billing',
      Creator: 'hipaa-billing',
      CreationDate: issued,
      ModDate: issued,
    },
  });
  // PDFKit takes a parsed (fontkit) font as it takes the file's bytes, and subsets it per document.
  doc.registerFont(REGULAR, fonts.regular as unknown as PDFKit.Mixins.PDFFontSource);
  doc.registerFont(BOLD, fonts.bold as unknown as PDFKit.Mixins.PDFFontSource);
  const chunks: Uint8Array[] = [];
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('data', (chunk: Uint8Array) => chunks.push(chunk));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });

  style(doc, REGULAR, 10);
  const money = moneyFormatter(view.currency, (text) => printable(doc, text) === text);
  let y = drawHeader(doc, view);
  y = drawBillTo(doc, view, money, y);
  y = drawLines(doc, view, money, y);
  drawTotals(doc, view, money, y);
  drawFooters(doc, view);
  doc.end();
  return done;
}

const REGULAR = 'DejaVuSans';
const BOLD = 'DejaVuSans-Bold';
type FontName = typeof REGULAR | typeof BOLD;

/** The font's glyph lookup (fontkit's, under PDFKit's embedded font). */
interface GlyphLookup {
  hasGlyphForCodePoint(codePoint: number): boolean;
}

/**
 * The text as the current font can draw it: a character it has no glyph for (CJK, say) prints as "?" rather than as an
 * empty box, so what the document says is never silently something else.
 */
function printable(doc: Doc, text: string): string {
  const font = (doc as unknown as { _font?: { font?: Partial<GlyphLookup> } })._font?.font;
  if (typeof font?.hasGlyphForCodePoint !== 'function') return text;
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    out += code <= 0x20 || font.hasGlyphForCodePoint(code) ? char : '?';
  }
  return out;
}

function write(doc: Doc, text: string, x: number, y: number, options: PDFKit.Mixins.TextOptions = {}): number {
  const wraps = options.width !== undefined;
  doc.text(printable(doc, text), x, y, { lineBreak: wraps, ...options });
  // Unwrapped text leaves doc.y where it was; the caller still wants the line below.
  return wraps ? doc.y : y + doc.currentLineHeight(true);
}

function style(doc: Doc, font: FontName, size: number, color = INK): Doc {
  return doc.font(font).fontSize(size).fillColor(color);
}

/** Letterhead top left; document title, number and dates top right. Returns the y below both. */
function drawHeader(doc: Doc, view: InvoiceView): number {
  const top = PAGE.margin;
  style(doc, BOLD, 16);
  let left = write(doc, view.from.name, PAGE.margin, top, { width: 270 }) + 2;
  style(doc, REGULAR, 9.5, MUTED);
  for (const line of view.from.address) left = write(doc, line, PAGE.margin, left, { width: 270 }) + 1;

  const isCredit = view.kind === 'credit_note';
  style(doc, BOLD, 22, ACCENT);
  write(doc, isCredit ? 'CREDIT NOTE' : 'INVOICE', 330, top - 2, { width: RIGHT - 330, align: 'right' });
  const rows: [string, string][] = [[isCredit ? 'Credit note no.' : 'Invoice no.', view.number]];
  rows.push(['Date issued', view.issuedOn]);
  if (view.dueOn !== undefined) rows.push(['Due date', view.dueOn]);
  if (view.creditsInvoice !== undefined) rows.push(['Credits invoice', view.creditsInvoice]);
  let right = top + 32;
  for (const [label, value] of rows) {
    style(doc, REGULAR, 9.5, MUTED);
    write(doc, label, 350, right, { width: 100 });
    style(doc, BOLD, 9.5);
    write(doc, value, 400, right, { width: RIGHT - 400, align: 'right' });
    right += 14;
  }
  const bottom = Math.max(left, right) + 14;
  doc.moveTo(PAGE.margin, bottom).lineTo(RIGHT, bottom).lineWidth(0.75).strokeColor(RULE).stroke();
  return bottom + 16;
}

/** Who is billed (reference always; name and address at the standard PHI level) and the amount-due panel. */
function drawBillTo(doc: Doc, view: InvoiceView, money: (n: number) => string, top: number): number {
  style(doc, BOLD, 8, MUTED);
  let y = write(doc, 'BILL TO', PAGE.margin, top) + 4;
  if (view.billTo.name !== undefined) {
    style(doc, BOLD, 11);
    y = write(doc, view.billTo.name, PAGE.margin, y, { width: 280 }) + 1;
  }
  style(doc, REGULAR, 10);
  for (const line of view.billTo.address ?? []) y = write(doc, line, PAGE.margin, y, { width: 280 }) + 1;
  if (view.billTo.name === undefined) {
    // The minimal level: the opaque account number is all the document says about the payer.
    style(doc, BOLD, 11);
    y = write(doc, `Account ${view.billTo.reference}`, PAGE.margin, y, { width: 280 });
  } else {
    style(doc, REGULAR, 9.5, MUTED);
    y = write(doc, `Account ${view.billTo.reference}`, PAGE.margin, y + 3, { width: 280 });
  }

  const isCredit = view.kind === 'credit_note';
  const panel = { x: 370, y: top - 4, width: RIGHT - 370, height: 66 };
  doc.roundedRect(panel.x, panel.y, panel.width, panel.height, 4).fillColor(SHADE).fill();
  style(doc, REGULAR, 9, MUTED);
  write(doc, isCredit ? 'Total credit' : 'Amount due', panel.x + 12, panel.y + 10, { width: panel.width - 24 });
  style(doc, BOLD, 20);
  const headline = isCredit ? view.total : view.amountDue;
  write(doc, money(headline), panel.x + 12, panel.y + 24, { width: panel.width - 24 });
  style(doc, REGULAR, 9, MUTED);
  const note = isCredit
    ? `Issued ${view.issuedOn}`
    : view.amountDue <= 0
      ? view.payment !== undefined
        ? `Paid in full on ${view.payment.paidOn}`
        : 'Nothing is due'
      : view.dueOn !== undefined
        ? `Due by ${view.dueOn}`
        : 'Due on receipt';
  write(doc, note, panel.x + 12, panel.y + 48, { width: panel.width - 24 });
  y = Math.max(y, panel.y + panel.height) + 16;

  if (view.period !== undefined) {
    style(doc, BOLD, 9.5);
    write(doc, 'Service period', PAGE.margin, y, { width: 90 });
    style(doc, REGULAR, 9.5);
    write(doc, `${view.period.start} – ${view.period.end}`, PAGE.margin + 90, y, { width: 200 });
    y += 20;
  }
  return y;
}

function drawTableHeader(doc: Doc, top: number): number {
  doc
    .rect(PAGE.margin, top, RIGHT - PAGE.margin, 20)
    .fillColor(SHADE)
    .fill();
  style(doc, BOLD, 8.5, MUTED);
  const y = top + 6;
  write(doc, 'DESCRIPTION', COLUMNS.description.x, y, { width: COLUMNS.description.width });
  write(doc, 'QTY', COLUMNS.quantity.x, y, { width: COLUMNS.quantity.width, align: 'right' });
  write(doc, 'UNIT PRICE', COLUMNS.unit.x, y, { width: COLUMNS.unit.width, align: 'right' });
  write(doc, 'AMOUNT', COLUMNS.amount.x, y, { width: COLUMNS.amount.width, align: 'right' });
  return top + 20;
}

/** The lines table; it continues on a new page (header repeated) when a row would run into the footer. */
function drawLines(doc: Doc, view: InvoiceView, money: (n: number) => string, top: number): number {
  let y = drawTableHeader(doc, top);
  for (const line of view.lines) {
    style(doc, REGULAR, 10);
    const description = printable(doc, line.description);
    const height = doc.heightOfString(description, { width: COLUMNS.description.width }) + 12;
    if (y + height > CONTENT_BOTTOM) {
      doc.addPage();
      style(doc, REGULAR, 9, MUTED);
      write(doc, `${view.number}, continued`, PAGE.margin, PAGE.margin);
      y = drawTableHeader(doc, PAGE.margin + 18);
      style(doc, REGULAR, 10);
    }
    write(doc, description, COLUMNS.description.x, y + 6, { width: COLUMNS.description.width });
    write(doc, formatQuantity(line.quantity), COLUMNS.quantity.x, y + 6, {
      width: COLUMNS.quantity.width,
      align: 'right',
    });
    write(doc, money(line.unitAmount), COLUMNS.unit.x, y + 6, { width: COLUMNS.unit.width, align: 'right' });
    write(doc, money(line.amount), COLUMNS.amount.x, y + 6, { width: COLUMNS.amount.width, align: 'right' });
    y += height;
    doc.moveTo(PAGE.margin, y).lineTo(RIGHT, y).lineWidth(0.5).strokeColor(RULE).stroke();
  }
  return y + 14;
}

/** Subtotal to amount due on the right; the status stamp and how it was paid on the left. */
function drawTotals(doc: Doc, view: InvoiceView, money: (n: number) => string, top: number): void {
  const isCredit = view.kind === 'credit_note';
  const rows: { label: string; value: number; strong?: boolean }[] = isCredit
    ? [
        { label: 'Subtotal', value: view.subtotal },
        { label: 'Total credit', value: view.total, strong: true },
      ]
    : [
        { label: 'Subtotal', value: view.subtotal },
        { label: 'Total', value: view.total },
        { label: 'Amount paid', value: view.amountPaid },
        { label: 'Amount due', value: view.amountDue, strong: true },
      ];
  let y = top;
  if (y + rows.length * 20 + 60 > CONTENT_BOTTOM) {
    doc.addPage();
    y = PAGE.margin;
  }
  const stampTop = y;
  const x = 360;
  for (const row of rows) {
    if (row.strong === true) {
      doc
        .rect(x - 8, y - 5, RIGHT - x + 8, 22)
        .fillColor(SHADE)
        .fill();
      style(doc, BOLD, 10.5);
    } else {
      style(doc, REGULAR, 10);
    }
    write(doc, row.label, x, y, { width: 110 });
    write(doc, money(row.value), x + 90, y, { width: RIGHT - 8 - (x + 90), align: 'right' });
    y += 22;
  }

  drawStamp(doc, view, PAGE.margin + 4, stampTop + 2);
  if (view.payment !== undefined) {
    const { brand, last4, paidOn } = view.payment;
    const verb = isCredit ? 'Credited to' : 'Paid by';
    style(doc, REGULAR, 9.5, MUTED);
    write(doc, `${verb} ${cardBrandName(brand)} •••• ${last4} on ${paidOn}`, PAGE.margin, stampTop + 52, {
      width: 280,
    });
  }
}

function drawStamp(doc: Doc, view: InvoiceView, x: number, y: number): void {
  const label = view.status.toUpperCase();
  const color = STAMP_COLORS[view.status];
  style(doc, BOLD, 15, color);
  const width = doc.widthOfString(label) + 24;
  doc.save();
  doc.rotate(-6, { origin: [x + width / 2, y + 15] });
  doc.roundedRect(x, y, width, 30, 4).lineWidth(1.75).strokeColor(color).stroke();
  write(doc, label, x + 12, y + 8.5);
  doc.restore();
}

/** Every page: the practice's footer text, and the document number with "Page n of m". */
function drawFooters(doc: Doc, view: InvoiceView): void {
  const range = doc.bufferedPageRange();
  for (let i = range.start; i < range.start + range.count; i++) {
    doc.switchToPage(i);
    // Text below the bottom margin would open a new page; the footer lives there on purpose.
    const margins = doc.page.margins;
    const bottom = margins.bottom;
    margins.bottom = 0;
    const ruleY = PAGE.height - 80;
    doc.moveTo(PAGE.margin, ruleY).lineTo(RIGHT, ruleY).lineWidth(0.75).strokeColor(RULE).stroke();
    style(doc, REGULAR, 8, MUTED);
    write(doc, view.footer, PAGE.margin, ruleY + 10, {
      width: RIGHT - PAGE.margin,
      align: 'center',
      height: 30,
      ellipsis: true,
    });
    write(
      doc,
      `${view.from.name} · ${view.number} · Page ${i - range.start + 1} of ${range.count}`,
      PAGE.margin,
      PAGE.height - 40,
      {
        width: RIGHT - PAGE.margin,
        align: 'center',
      },
    );
    margins.bottom = bottom;
  }
}
