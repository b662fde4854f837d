import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PHI_LEVELS, type InvoiceView } from '../../domain/invoice';
import { invoiceView } from '../../domain/invoice-view';
import { renderInvoicePdf } from '../../documents/invoice-pdf';
import { createRenderPool } from '../../documents/render-pool';
import {
  LETTERHEAD,
  PAYER_ACCOUNT,
  PAYER_ADDRESS,
  PAYER_NAME,
  PAYER_REFERENCE,
  SEEDED_STRINGS,
  paidInvoice,
  viewInput,
} from './support/invoice-fixtures';

/**
 * Renders real PDFs and reads them back with poppler's pdftotext. The pool test loads the compiled worker from dist/,
 * so `npx tsc -p tsconfig.build.json` (or `npm run build`) must run first; `npm test` builds.
 */

const workDir = mkdtempSync(path.join(tmpdir(), 'invoice-pdf-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

function pdfText(pdf: Buffer): string {
  const file = path.join(workDir, `${sha256(pdf)}.pdf`);
  writeFileSync(file, pdf);
  return execFileSync('pdftotext', ['-layout', file, '-'], { encoding: 'utf8' });
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('renderInvoicePdf', () => {
  it.each(PHI_LEVELS)('at %s, prints the invoice and none of the PHI seeded in the payer record', async (level) => {
    const pdf = await renderInvoicePdf(invoiceView(viewInput(level)));
    expect(pdf.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    const text = pdfText(pdf);

    for (const expected of [
      LETTERHEAD.name,
      '200 Main Street, Suite 4',
      'INVOICE',
      'DFP-2026-000123',
      '2026-05-01',
      '2026-05-31',
      'Office visit',
      'Membership — monthly',
      '$20.00',
      '$10.00',
      '$30.00',
      '$0.00',
      'PAID',
      'Paid by VISA •••• 4242 on 2026-05-01',
      `Account ${PAYER_ACCOUNT}`,
      'Page 1 of 1',
    ]) {
      expect(text).toContain(expected);
    }
    // Neither in the text a reader sees nor anywhere in the file's bytes (streams are uncompressed).
    const bytes = pdf.toString('latin1');
    for (const seeded of SEEDED_STRINGS) {
      expect(text).not.toContain(seeded);
      expect(bytes).not.toContain(seeded);
    }
    // The upstream's payer reference may be a record number: no level prints it.
    expect(bytes).not.toContain(PAYER_REFERENCE);
    if (level === 'minimal') {
      expect(text).not.toContain(PAYER_NAME);
      expect(text).not.toContain(PAYER_ADDRESS[0]);
    } else {
      expect(text).toContain(PAYER_NAME);
      for (const line of PAYER_ADDRESS) expect(text).toContain(line);
    }
  });

  it('renders the same bytes for the same invoice, whatever the clock says', async () => {
    const view = invoiceView(viewInput('standard'));
    const first = await renderInvoicePdf(view);
    // Only Date is faked: PDFKit's streams still need real timers and ticks.
    jest.useFakeTimers({
      now: new Date('2031-12-24T23:59:59Z'),
      doNotFake: ['nextTick', 'setImmediate', 'clearImmediate', 'setTimeout', 'clearTimeout', 'queueMicrotask'],
    });
    try {
      const again = await renderInvoicePdf(structuredClone(view));
      expect(sha256(again)).toBe(sha256(first));
    } finally {
      jest.useRealTimers();
    }
    expect(first.toString('latin1')).toContain('(D:20260501000000Z)');
  });

  it('renders the bytes it rendered before the font subsetting was patched for speed', async () => {
    // patches/fontkit+2.0.4.patch and patches/restructure+3.0.2.patch make a render cheaper and must not change one
    // byte of a document: these are the SHA-256s of the unpatched libraries' output. Names with composite glyphs
    // (é, ñ, ö, й, έ: an accent placed on a base glyph) take the path the patch changed most.
    const payer = {
      reference: 'PAY-8',
      name: 'José Ñúñez Öberg',
      billingAddress: ['ул. Зимняя 7, кв. й', 'Οδός Ερμού έ'],
    };
    const rendered = await Promise.all([
      renderInvoicePdf(invoiceView(viewInput('standard'))),
      renderInvoicePdf(invoiceView(viewInput('minimal'))),
      renderInvoicePdf(invoiceView({ ...viewInput('standard'), payer })),
    ]);
    expect(rendered.map(sha256)).toEqual([
      '51c3c5c539d710c1b601bac7978a531839578ca315f61227bd6434c1421b619c',
      'd7608c4b564a89d09cc53ca290760b60e5bd6910a9b5e2506b6a30ecf666fb50',
      '03179eb9d657eb7261aa20e3d69ea333d1b033d76f660fe80d77c4eb03ee27f8',
    ]);
  });

  it('renders a document the same whatever other documents the parsed fonts served before', async () => {
    // The fonts are parsed once per process and every document subsets them: a document's bytes (its subset, its
    // glyph widths) may not depend on what was rendered before it.
    const latin = invoiceView(viewInput('standard'));
    const before = await renderInvoicePdf(latin);
    const payer = { reference: 'PAY-7', name: 'Ξένια Пушкина', billingAddress: ['Οδός Ερμού 12', 'ул. Пушкина'] };
    await renderInvoicePdf(invoiceView({ ...viewInput('standard'), payer }));
    const after = await renderInvoicePdf(structuredClone(latin));
    expect(sha256(after)).toBe(sha256(before));
    expect(pdfText(after)).not.toContain('Ξένια');
  });

  it('renders a credit note with the invoice it credits', async () => {
    const document = paidInvoice({
      kind: 'credit_note',
      number: 'DFP-CN-2026-000004',
      creditsInvoice: 'DFP-2026-000123',
      dueOn: undefined,
      period: undefined,
      lines: [{ description: 'Office visit', quantity: 1, unitAmount: 2000, amount: 2000 }],
      amounts: { subtotal: 2000, total: 2000, amountPaid: 2000, amountDue: 0 },
    });
    const text = pdfText(await renderInvoicePdf(invoiceView({ ...viewInput('minimal'), document })));
    expect(text).toContain('CREDIT NOTE');
    expect(text).toContain('DFP-CN-2026-000004');
    expect(text).toMatch(/Credits invoice\s+DFP-2026-000123/);
    expect(text).toMatch(/Total credit\s+\$20\.00/);
    expect(text).toContain('Credited to VISA •••• 4242 on 2026-05-01');
  });

  it('continues a long table on further pages, each with the footer and page count', async () => {
    const lines = Array.from({ length: 30 }, (_, i) => ({
      description: `Lab services ${i + 1}`,
      quantity: 2,
      unitAmount: 1250,
      amount: 2500,
    }));
    const document = paidInvoice({
      status: 'open',
      lines,
      payment: undefined,
      amounts: { subtotal: 75_000, total: 75_000, amountPaid: 0, amountDue: 75_000 },
    });
    const text = pdfText(await renderInvoicePdf(invoiceView({ ...viewInput('minimal'), document })));
    expect(text).toContain('Page 1 of 2');
    expect(text).toContain('Page 2 of 2');
    for (const line of lines) expect(text).toMatch(new RegExp(`${line.description}\\s+2\\s+\\$12\\.50\\s+\\$25\\.00`));
    expect(text).toMatch(/Amount due\s+\$750\.00/);
    expect(text).not.toContain('Page 3');
    expect(text).toContain('Due by 2026-05-31');
    expect(text).toContain('OPEN');
  });

  it('prints names in Latin, Greek and Cyrillic script with the embedded font; a glyph it lacks prints as "?"', async () => {
    const payer = {
      reference: 'PAY-9',
      name: 'Zoë Nguyễn Łódź',
      billingAddress: ['Οδός Ερμού 12, Αθήνα', 'ул. Пушкина, д. 10, Москва', '王府井'],
    };
    const document = paidInvoice({
      currency: 'jpy',
      lines: [{ description: 'Office visit', quantity: 1, unitAmount: 3000, amount: 3000 }],
      amounts: { subtotal: 3000, total: 3000, amountPaid: 3000, amountDue: 0 },
    });
    const pdf = await renderInvoicePdf(invoiceView({ ...viewInput('standard'), payer, document }));
    const text = pdfText(pdf);
    expect(text).toContain('Zoë Nguyễn Łódź');
    expect(text).toContain('Οδός Ερμού 12, Αθήνα');
    expect(text).toContain('ул. Пушкина, д. 10, Москва');
    expect(text).toContain('???');
    expect(text).toContain('¥3,000');
    // The font travels in the file: a TrueType subset, not one of the viewer's standard fonts.
    const fonts = execFileSync('pdffonts', [path.join(workDir, `${sha256(pdf)}.pdf`)], { encoding: 'utf8' });
    expect(fonts).toMatch(/DejaVuSans\s.*(TrueType|CID TrueType).*yes\s+yes/);
    expect(fonts).not.toContain('Helvetica');
  });

  it.each([
    // Stripe's minor units, where ICU disagrees (it counts no decimals for HUF, ISK, IDR): amount 3000 is 30.00.
    ['huf', 'HUF 30.00'],
    ['isk', 'ISK 30.00'],
    ['idr', 'IDR 30.00'],
    ['jpy', '¥3,000'],
    ['krw', '₩3,000'],
    ['kwd', 'KWD 3.000'],
    ['usd', '$30.00'],
  ])('prints an amount of 3000 in %s as %s', async (currency, printed) => {
    const document = paidInvoice({
      currency,
      lines: [{ description: 'Office visit', quantity: 1, unitAmount: 3000, amount: 3000 }],
      amounts: { subtotal: 3000, total: 3000, amountPaid: 3000, amountDue: 0 },
    });
    const text = pdfText(await renderInvoicePdf(invoiceView({ ...viewInput('minimal'), document })));
    expect(text).toMatch(new RegExp(`Total\\s+${printed.replace(/[$.]/g, '\\$&')}`));
  });
});

describe('createRenderPool', () => {
  const pool = createRenderPool({ threads: 2 });
  afterAll(() => pool.close());

  it('renders on worker threads the same bytes as the direct call', async () => {
    const views: InvoiceView[] = PHI_LEVELS.map((level) => invoiceView(viewInput(level)));
    const pooled = await Promise.all(views.map((view) => pool.render(view)));
    const direct = await Promise.all(views.map((view) => renderInvoicePdf(view)));
    expect(pooled.map(sha256)).toEqual(direct.map(sha256));
    expect(Buffer.isBuffer(pooled[0])).toBe(true);
  });

  it('keeps no render thread while idle, and starts one again for the next render', async () => {
    const idle = createRenderPool({ threads: 1, idleTimeoutMs: 100 });
    try {
      const view = invoiceView(viewInput('standard'));
      expect(idle.threads).toBe(0);
      const first = await idle.render(view);
      expect(idle.threads).toBe(1);
      const deadline = Date.now() + 10_000;
      while (idle.threads > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(idle.threads).toBe(0);
      const again = await idle.render(view);
      expect(sha256(again)).toBe(sha256(first));
      expect(idle.threads).toBe(1);
    } finally {
      await idle.close();
    }
  });

  it('refuses a thread count outside its bounds', () => {
    expect(() => createRenderPool({ threads: 0 })).toThrow(/threads/);
    expect(() => createRenderPool({ threads: 1.5 })).toThrow(/threads/);
  });
});
