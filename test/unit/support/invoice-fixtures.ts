import type { InvoiceDocumentInput, InvoiceViewInput } from '../../../domain/invoice-view';
import type { Letterhead, PhiLevel } from '../../../domain/invoice';

/**
 * A payer record as an upstream app might wrongly store it: besides the reference, name and billing address, it holds
 * clinical and identifying data that must never reach a document at any PHI level.
 */
export const SEEDED_PHI = {
  dateOfBirth: '1984-03-17',
  diagnosis: 'F32.9',
  diagnosisText: 'Major depressive disorder',
  procedure: 'Psychotherapy, 53 minutes, CPT 90837',
  memberNumber: 'XJH448120937',
  medicalRecordNumber: 'MRN-0048213',
  notes: 'Prefers afternoon appointments',
  email: 'jordan.rivera@example.com',
  appointment: 'Dr. Okafor, Tuesday 3:30 pm',
} as const;

/** Each seeded value as it could appear in text, including the date of birth in US notation. */
export const SEEDED_STRINGS: string[] = [...Object.values(SEEDED_PHI), '03/17/1984', '90837'];

/** The payer reference the upstream app chose: it may be a record number, so no document prints it. */
export const PAYER_REFERENCE = 'MRN-7F3K2Q';

export const PAYER_NAME = 'Jordan A. Rivera';
export const PAYER_ADDRESS = ['1420 Elm Street, Apt 3B', 'Springfield, IL 62704'];

export function stuffedPayer(): Record<string, unknown> {
  return {
    reference: PAYER_REFERENCE,
    name: PAYER_NAME,
    billingAddress: [...PAYER_ADDRESS],
    dateOfBirth: new Date(`${SEEDED_PHI.dateOfBirth}T00:00:00Z`),
    dob: SEEDED_PHI.dateOfBirth,
    diagnosis: { code: SEEDED_PHI.diagnosis, text: SEEDED_PHI.diagnosisText },
    diagnosisCodes: [SEEDED_PHI.diagnosis],
    procedure: SEEDED_PHI.procedure,
    memberNumber: SEEDED_PHI.memberNumber,
    medicalRecordNumber: SEEDED_PHI.medicalRecordNumber,
    notes: SEEDED_PHI.notes,
    email: SEEDED_PHI.email,
    appointment: { with: SEEDED_PHI.appointment },
  };
}

export const LETTERHEAD: Letterhead = {
  name: 'Dogwood Family Practice',
  address: ['200 Main Street, Suite 4', 'Springfield, IL 62701', '(217) 555-0142'],
};

/** A paid monthly invoice of a practice in Chicago: $20.00 office visit + $10.00 membership. */
export function paidInvoice(overrides: Partial<InvoiceDocumentInput> = {}): InvoiceDocumentInput {
  return {
    kind: 'invoice',
    number: 'DFP-2026-000123',
    status: 'paid',
    issuedOn: new Date('2026-05-01T14:00:00Z'),
    dueOn: new Date('2026-05-31T14:00:00Z'),
    // Midnight in Chicago (CDT, UTC-5) to the next period's start.
    period: { start: new Date('2026-05-01T05:00:00Z'), end: new Date('2026-06-01T05:00:00Z') },
    lines: [
      { description: 'Office visit', quantity: 1, unitAmount: 2000, amount: 2000 },
      { description: 'Membership — monthly', quantity: 1, unitAmount: 1000, amount: 1000 },
    ],
    currency: 'usd',
    amounts: { subtotal: 3000, total: 3000, amountPaid: 3000, amountDue: 0 },
    payment: { brand: 'visa', last4: '4242', paidAt: new Date('2026-05-01T15:00:00Z') },
    timeZone: 'America/Chicago',
    ...overrides,
  };
}

/** The opaque account number a document prints for the payer (the application derives it with the company's key). */
export const PAYER_ACCOUNT = 'ACCT-7F3K-2QAB-CD12';

export function viewInput(phiLevel: PhiLevel, overrides: Partial<InvoiceViewInput> = {}): InvoiceViewInput {
  return {
    document: paidInvoice(),
    account: PAYER_ACCOUNT,
    payer: stuffedPayer(),
    phiLevel,
    letterhead: LETTERHEAD,
    ...overrides,
  };
}
