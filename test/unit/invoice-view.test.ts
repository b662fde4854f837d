import { PHI_LEVELS } from '../../domain/invoice';
import { createHash } from 'node:crypto';
import {
  cleanText,
  DEFAULT_INVOICE_FOOTER,
  invoiceView,
  InvoiceViewError,
  PAYER_ACCOUNT_NUMBER,
  payerAccountNumber,
} from '../../domain/invoice-view';
import {
  LETTERHEAD,
  PAYER_ACCOUNT,
  PAYER_ADDRESS,
  PAYER_NAME,
  PAYER_REFERENCE,
  SEEDED_STRINGS,
  paidInvoice,
  stuffedPayer,
  viewInput,
} from './support/invoice-fixtures';

/** Every key a view may hold (array indexes as '#'): the shape of InvoiceView, nothing from the payer record. */
const ALLOWED_KEYS = [
  ...['kind', 'number', 'status', 'issuedOn', 'dueOn', 'period', 'start', 'end', 'from', 'name', 'address', '#'],
  ...['billTo', 'reference', 'lines', 'description', 'quantity', 'unitAmount', 'amount', 'currency', 'subtotal'],
  ...['total', 'amountPaid', 'amountDue', 'payment', 'brand', 'last4', 'paidOn', 'creditsInvoice', 'footer'],
];

describe('invoiceView: minimum necessary', () => {
  it.each(PHI_LEVELS)('at %s, nothing the payer record holds beyond the allowed fields reaches the view', (level) => {
    const view = invoiceView(viewInput(level));
    const json = JSON.stringify(view);
    for (const seeded of SEEDED_STRINGS) expect(json).not.toContain(seeded);
    const keys = JSON.stringify(view, (key: string, value: unknown) => {
      if (key !== '') expect(ALLOWED_KEYS).toContain(key.replace(/^\d+$/, '#'));
      return value;
    });
    expect(keys).toBe(json);
    expect(Object.keys(view.billTo).sort()).toEqual(
      level === 'minimal' ? ['reference'] : ['address', 'name', 'reference'],
    );
  });

  it('minimal (the default level) shows the opaque account number only, never the upstream payer reference', () => {
    const view = invoiceView(viewInput('minimal'));
    expect(view.billTo).toEqual({ reference: PAYER_ACCOUNT });
    expect(JSON.stringify(view)).not.toContain(PAYER_REFERENCE);
    expect(JSON.stringify(view)).not.toContain(PAYER_NAME);
    expect(JSON.stringify(view)).not.toContain(PAYER_ADDRESS[0]);
  });

  it('standard adds the payer name and billing address', () => {
    const view = invoiceView(viewInput('standard'));
    expect(view.billTo).toEqual({ reference: PAYER_ACCOUNT, name: PAYER_NAME, address: PAYER_ADDRESS });
    expect(JSON.stringify(view)).not.toContain(PAYER_REFERENCE);
  });

  it('copies, never shares, what it reads: later changes to the payer record do not reach the view', () => {
    const payer = stuffedPayer();
    const view = invoiceView(viewInput('standard', { payer }));
    (payer.billingAddress as string[]).push('Diagnosis F32.9');
    payer.name = 'Someone else';
    expect(view.billTo.address).toEqual(PAYER_ADDRESS);
    expect(view.billTo.name).toBe(PAYER_NAME);
  });

  it('drops address entries that are not text and keeps at most four lines', () => {
    const payer = { reference: 'PAY-1', billingAddress: ['a', { dob: '1984-03-17' }, 'b', 'c', 'd', 'e'] };
    expect(invoiceView(viewInput('standard', { payer })).billTo.address).toEqual(['a', 'b', 'c', 'd']);
  });

  it('refuses a missing payer, and an account number that is not an opaque one (a record number, say)', () => {
    expect(() => invoiceView(viewInput('minimal', { payer: null }))).toThrow(InvoiceViewError);
    for (const account of ['MRN-0048213', '', 'ACCT-1234']) {
      expect(() => invoiceView(viewInput('minimal', { account }))).toThrow(InvoiceViewError);
    }
  });

  it('derives a stable account number that does not contain the reference', () => {
    const digest = createHash('sha256').update('keyed digest of MRN-0048213').digest();
    const account = payerAccountNumber(digest);
    expect(account).toMatch(PAYER_ACCOUNT_NUMBER);
    expect(payerAccountNumber(Uint8Array.from(digest))).toBe(account);
    expect(payerAccountNumber(createHash('sha256').update('another').digest())).not.toBe(account);
    expect(account).not.toContain('0048213');
  });
});

describe('invoiceView: dates, amounts, text', () => {
  it('prints dates as the practice calendar reads them, and a period by its last day', () => {
    const view = invoiceView(viewInput('minimal'));
    expect(view).toMatchObject({
      issuedOn: '2026-05-01',
      dueOn: '2026-05-31',
      period: { start: '2026-05-01', end: '2026-05-31' },
      payment: { brand: 'visa', last4: '4242', paidOn: '2026-05-01' },
    });
    // 03:00 UTC on May 1 is still April 30 in Chicago.
    const late = invoiceView({
      ...viewInput('minimal'),
      document: paidInvoice({ issuedOn: new Date('2026-05-01T03:00:00Z') }),
    });
    expect(late.issuedOn).toBe('2026-04-30');
  });

  it('carries amounts in minor units and the currency in lower case', () => {
    const view = invoiceView({ ...viewInput('minimal'), document: paidInvoice({ currency: 'USD' }) });
    expect(view).toMatchObject({ currency: 'usd', subtotal: 3000, total: 3000, amountPaid: 3000, amountDue: 0 });
    expect(view.lines).toEqual([
      { description: 'Office visit', quantity: 1, unitAmount: 2000, amount: 2000 },
      { description: 'Membership — monthly', quantity: 1, unitAmount: 1000, amount: 1000 },
    ]);
  });

  it('turns control, bidi and line-break characters into spaces and caps lengths', () => {
    const payer = {
      reference: 'PAY-1\u0000',
      name: 'Jordan\u202E\r\nRivera\u200B ',
      billingAddress: ['x'.repeat(200)],
    };
    const view = invoiceView(viewInput('standard', { payer, footer: 'Thank\tyou.\u0007' }));
    expect(view.billTo.name).toBe('Jordan Rivera');
    expect(view.billTo.address?.[0]).toHaveLength(80);
    expect(view.billTo.address?.[0]?.endsWith('…')).toBe(true);
    expect(view.footer).toBe('Thank you.');
    expect(cleanText('  a \n\n b  ', 10)).toBe('a b');
  });

  it('uses the default footer and the letterhead as given', () => {
    const view = invoiceView(viewInput('minimal'));
    expect(view.footer).toBe(DEFAULT_INVOICE_FOOTER);
    expect(view.from).toEqual(LETTERHEAD);
  });

  it('shows an unknown card brand as a plain card', () => {
    const payment = { brand: 'Visa<script>', last4: '4242', paidAt: new Date('2026-05-01T15:00:00Z') };
    const view = invoiceView({ ...viewInput('minimal'), document: paidInvoice({ payment }) });
    expect(view.payment?.brand).toBe('card');
  });

  it.each([
    ['a draft', paidInvoice({ status: 'draft' })],
    [
      'a full card number as last4',
      paidInvoice({ payment: { brand: 'visa', last4: '4242424242424242', paidAt: new Date() } }),
    ],
    ['an unknown time zone', paidInvoice({ timeZone: 'Mars/Olympus' })],
    ['a fractional amount', paidInvoice({ amounts: { subtotal: 30.5, total: 3000, amountPaid: 0, amountDue: 3000 } })],
    ['an unknown currency', paidInvoice({ currency: 'xyz' })],
    ['an invalid date', paidInvoice({ issuedOn: new Date('nope') })],
    [
      'a period ending before it starts',
      paidInvoice({ period: { start: new Date('2026-06-01'), end: new Date('2026-05-01') } }),
    ],
    ['a credit note that names no invoice', paidInvoice({ kind: 'credit_note' })],
    [
      'lines that do not add up to the subtotal',
      paidInvoice({ amounts: { subtotal: 2500, total: 2500, amountPaid: 2500, amountDue: 0 } }),
    ],
    [
      'a negative line',
      paidInvoice({
        lines: [
          { description: 'Office visit', quantity: 1, unitAmount: 4000, amount: 4000 },
          { description: 'Plan change adjustment', quantity: 1, unitAmount: -1000, amount: -1000 },
        ],
      }),
    ],
    [
      'a negative total',
      paidInvoice({ lines: [], amounts: { subtotal: -5, total: -5, amountPaid: 0, amountDue: -5 } }),
    ],
    [
      'paid and due that do not make the total',
      paidInvoice({ amounts: { subtotal: 3000, total: 3000, amountPaid: 3000, amountDue: 3000 } }),
    ],
    [
      'a line whose amount is not quantity × unit',
      paidInvoice({
        lines: [
          { description: 'Office visit', quantity: 2, unitAmount: 2000, amount: 2000 },
          { description: 'Membership — monthly', quantity: 1, unitAmount: 1000, amount: 1000 },
        ],
      }),
    ],
  ])('refuses %s', (_what, document) => {
    expect(() => invoiceView({ ...viewInput('minimal'), document })).toThrow(InvoiceViewError);
  });
});
