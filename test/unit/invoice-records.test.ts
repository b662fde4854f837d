import {
  companyInvoiceSettingsSchema,
  DEFAULT_NEUTRAL_LETTERHEAD,
  effectiveInvoiceSettings,
  mergeUpdate,
  officeInvoiceSettingsSchema,
  payerProfileSchema,
} from '../../domain/invoice-settings';
import { intervalWording, planLine, serviceLine } from '../../domain/invoice-catalog';
import {
  creditNoteIdFor,
  CREDIT_NOTE_ID,
  documentKindOf,
  formatDocumentNumber,
  invoiceIdFor,
  INVOICE_ID,
  yearIn,
} from '../../domain/invoice-number';
import { SERVICE_CATEGORIES } from '../../domain/service-categories';

describe('invoice numbers', () => {
  it('prints prefix, year and a six-digit place; credit notes have their own', () => {
    expect(formatDocumentNumber('invoice', 'DFP', 2026, 123)).toBe('DFP-2026-000123');
    expect(formatDocumentNumber('credit_note', 'DFP', 2026, 4)).toBe('DFP-CN-2026-000004');
    expect(formatDocumentNumber('invoice', 'DFP', 2031, 1_234_567)).toBe('DFP-2031-1234567');
  });

  it('takes the year of issue in the company time zone', () => {
    const newYearsEveInChicago = new Date('2027-01-01T05:30:00Z');
    expect(yearIn(newYearsEveInChicago, 'America/Chicago')).toBe(2026);
    expect(yearIn(newYearsEveInChicago, 'UTC')).toBe(2027);
  });

  it('derives one id per source, of the right kind', () => {
    const invoice = invoiceIdFor({ type: 'payment', id: 'pay_01' });
    expect(invoice).toMatch(INVOICE_ID);
    expect(invoiceIdFor({ type: 'payment', id: 'pay_01' })).toBe(invoice);
    expect(invoiceIdFor({ type: 'subscription_period', id: 'pay_01' })).not.toBe(invoice);
    expect(creditNoteIdFor('ref_01')).toMatch(CREDIT_NOTE_ID);
    expect(documentKindOf(invoice)).toBe('invoice');
    expect(documentKindOf(creditNoteIdFor('ref_01'))).toBe('credit_note');
    expect(documentKindOf('pay_01')).toBeUndefined();
  });
});

describe('the line catalog', () => {
  it('words every service category, and a payment without one as other services', () => {
    for (const category of SERVICE_CATEGORIES) expect(serviceLine(category).description).toMatch(/^[A-Z]/);
    expect(serviceLine('office_visit')).toEqual({ code: 'office_visit', description: 'Office visit' });
    expect(serviceLine(undefined)).toEqual({ code: 'other_services', description: 'Other services' });
  });

  it('words a plan by its category and interval, never its name', () => {
    expect(planLine('membership', { unit: 'month', count: 1 }).description).toBe('Membership — monthly');
    expect(planLine('payment_plan', { unit: 'month', count: 3 }).description).toBe('Payment plan — every 3 months');
    expect(intervalWording({ unit: 'year', count: 1 })).toBe('yearly');
  });
});

describe('invoice settings and payer profiles', () => {
  it('defaults to prefix INV, minimal PHI, the company name as letterhead, no reason required', () => {
    expect(effectiveInvoiceSettings('Riverside Clinic')).toEqual({
      numberPrefix: 'INV',
      phiLevel: 'minimal',
      letterheadStyle: 'practice',
      letterhead: { name: 'Riverside Clinic', address: [] },
      requireDownloadReason: false,
    });
  });

  it('prints the neutral letterhead for an office whose name reveals a specialty', () => {
    const company = { letterhead: { name: 'Riverside Health', address: ['1 Main St'] } };
    const oncology = { letterhead: { name: 'Riverside Oncology', address: ['9 Cancer Center Dr'] } };
    expect(effectiveInvoiceSettings('Riverside', company, { ...oncology, letterheadStyle: 'neutral' })).toMatchObject({
      letterheadStyle: 'neutral',
      letterhead: DEFAULT_NEUTRAL_LETTERHEAD,
    });
    const neutralLetterhead = { name: 'RH Billing', address: ['PO Box 12'] };
    expect(
      effectiveInvoiceSettings(
        'Riverside',
        { ...company, neutralLetterhead },
        { ...oncology, letterheadStyle: 'neutral' },
      ).letterhead,
    ).toEqual(neutralLetterhead);
    // The company may make it the default; an office may still choose its own.
    const neutralByDefault = { ...company, neutralLetterhead, letterheadStyle: 'neutral' as const };
    expect(effectiveInvoiceSettings('Riverside', neutralByDefault, oncology).letterhead).toEqual(neutralLetterhead);
    expect(
      effectiveInvoiceSettings('Riverside', neutralByDefault, { ...oncology, letterheadStyle: 'practice' }).letterhead,
    ).toEqual(oncology.letterhead);
  });

  it('reads a change as a merge: fields left out are untouched, null clears one', () => {
    const change = companyInvoiceSettingsSchema.parse({ phiLevel: 'standard', letterhead: null });
    expect(mergeUpdate(change)).toEqual({ $set: { phiLevel: 'standard' }, $unset: { letterhead: 1 } });
  });

  it('lets an office override the PHI level and letterhead, never the prefix or the reason rule', () => {
    const company = mergeUpdate(
      companyInvoiceSettingsSchema.parse({ numberPrefix: 'DFP', requireDownloadReason: true }),
    ).$set;
    const office = mergeUpdate(
      officeInvoiceSettingsSchema.parse({
        phiLevel: 'standard',
        letterhead: { name: 'Riverside East', address: ['1 East Rd'] },
      }),
    ).$set;
    expect(effectiveInvoiceSettings('Riverside', company, office)).toEqual({
      numberPrefix: 'DFP',
      phiLevel: 'standard',
      letterheadStyle: 'practice',
      letterhead: { name: 'Riverside East', address: ['1 East Rd'] },
      requireDownloadReason: true,
    });
    expect(officeInvoiceSettingsSchema.safeParse({ numberPrefix: 'X' }).success).toBe(false);
  });

  it('refuses a bad prefix and multi-line letterhead text', () => {
    expect(companyInvoiceSettingsSchema.safeParse({ numberPrefix: 'dfp 2026' }).success).toBe(false);
    expect(
      companyInvoiceSettingsSchema.safeParse({ letterhead: { name: 'Clinic\nDiagnosis: flu', address: [] } }).success,
    ).toBe(false);
  });

  it('accepts a payer profile of name, billing address and email only', () => {
    const payer = { name: 'Jordan Payer', billingAddress: ['44 Elm Street'], email: 'jp@example.com' };
    expect(payerProfileSchema.parse(payer)).toEqual(payer);
    for (const extra of [{ dateOfBirth: '1980-01-01' }, { diagnosis: 'J45.909' }, { notes: 'x' }]) {
      expect(payerProfileSchema.safeParse({ ...payer, ...extra }).success).toBe(false);
    }
    expect(payerProfileSchema.safeParse({ ...payer, billingAddress: ['1', '2', '3', '4', '5'] }).success).toBe(false);
  });
});
