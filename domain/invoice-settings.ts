import { IANAZone } from 'luxon';
import { z } from 'zod';
import { PHI_LEVELS, type Letterhead, type PhiLevel } from './invoice';
import { DEFAULT_INVOICE_NUMBER_PREFIX, INVOICE_NUMBER_PREFIX } from './invoice-number';

/**
 * A company's invoice settings (number prefix, PHI level, letterhead, neutral letterhead, whether downloads need a
 * stated reason), and an office's overrides (PHI level, letterhead, letterhead style). Request bodies are strict: an
 * unknown field is refused, so nothing clinical can ride along. A `PUT` merges: a field left out keeps its stored
 * value, `null` clears it back to its default (README: "Invoice settings").
 */
const printableLine = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .regex(/^[^\p{Cc}\p{Co}]+$/u, 'must be plain printable text on one line');

const addressLines = z.array(printableLine(80)).max(4);

export const letterheadSchema = z.object({ name: printableLine(100), address: addressLines.default([]) }).strict();

/**
 * `practice`: the practice's (or office's) letterhead. `neutral`: the company's neutral letterhead, for an office whose
 * name reveals a specialty (a letter from "Riverside Oncology" says something about its payer).
 */
export const LETTERHEAD_STYLES = ['practice', 'neutral'] as const;
export type LetterheadStyle = (typeof LETTERHEAD_STYLES)[number];

/** What a neutral letterhead prints when the company has not set one: no practice name, no address. */
export const DEFAULT_NEUTRAL_LETTERHEAD: Letterhead = { name: 'Patient Billing Services', address: [] };

/** A change to the company's settings: each field left out is kept, `null` clears it (back to its default). */
export const companyInvoiceSettingsSchema = z
  .object({
    numberPrefix: z
      .string()
      .regex(INVOICE_NUMBER_PREFIX, 'must be upper-case letters and digits, e.g. "DFP" or "DFP-EAST"')
      .nullable()
      .optional(),
    phiLevel: z.enum(PHI_LEVELS).nullable().optional(),
    letterhead: letterheadSchema.nullable().optional(),
    letterheadStyle: z.enum(LETTERHEAD_STYLES).nullable().optional(),
    neutralLetterhead: letterheadSchema.nullable().optional(),
    requireDownloadReason: z.boolean().nullable().optional(),
    /** The practice's IANA time zone, for documents of a company without billing settings (whose time zone wins). */
    timeZone: z
      .string()
      .max(64)
      .refine((zone) => IANAZone.isValidZone(zone), 'must be an IANA time zone, e.g. "America/Chicago"')
      .nullable()
      .optional(),
  })
  .strict();
export type CompanyInvoiceSettingsChange = z.infer<typeof companyInvoiceSettingsSchema>;

/** Stored company settings (each field absent: its default). */
export interface CompanyInvoiceSettings {
  numberPrefix?: string;
  phiLevel?: PhiLevel;
  letterhead?: Letterhead;
  letterheadStyle?: LetterheadStyle;
  neutralLetterhead?: Letterhead;
  requireDownloadReason?: boolean;
  timeZone?: string;
}

/** A change to an office's overrides: each field left out is kept, `null` removes the override (the company's applies). */
export const officeInvoiceSettingsSchema = z
  .object({
    phiLevel: z.enum(PHI_LEVELS).nullable().optional(),
    letterhead: letterheadSchema.nullable().optional(),
    letterheadStyle: z.enum(LETTERHEAD_STYLES).nullable().optional(),
  })
  .strict();
export type OfficeInvoiceSettingsChange = z.infer<typeof officeInvoiceSettingsSchema>;

export interface OfficeInvoiceSettings {
  phiLevel?: PhiLevel;
  letterhead?: Letterhead;
  letterheadStyle?: LetterheadStyle;
}

/** A merge change as one MongoDB update: given fields are `$set`, `null` ones `$unset`, absent ones untouched. */
export function mergeUpdate(change: Record<string, unknown>): {
  $set: Record<string, unknown>;
  $unset: Record<string, 1>;
} {
  const update = { $set: {} as Record<string, unknown>, $unset: {} as Record<string, 1> };
  for (const [field, value] of Object.entries(change)) {
    if (value === undefined) continue;
    if (value === null) update.$unset[field] = 1;
    else update.$set[field] = value;
  }
  return update;
}

/** A payer's billing details, keyed by the opaque payer reference: name, billing address, email. Nothing else. */
export const payerProfileSchema = z
  .object({
    name: printableLine(120),
    billingAddress: addressLines.min(1),
    email: z.email().max(254),
  })
  .strict();
export type PayerProfile = z.infer<typeof payerProfileSchema>;

export interface EffectiveInvoiceSettings {
  numberPrefix: string;
  phiLevel: PhiLevel;
  letterheadStyle: LetterheadStyle;
  letterhead: Letterhead;
  requireDownloadReason: boolean;
  timeZone?: string;
}

/**
 * The company's settings with the office's overrides; without settings: prefix INV, minimal, the company's name. With
 * the `neutral` style (the office's, else the company's), the company's neutral letterhead replaces the practice's.
 */
export function effectiveInvoiceSettings(
  companyName: string,
  company?: CompanyInvoiceSettings,
  office?: OfficeInvoiceSettings,
): EffectiveInvoiceSettings {
  const style = office?.letterheadStyle ?? company?.letterheadStyle ?? 'practice';
  return {
    numberPrefix: company?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX,
    phiLevel: office?.phiLevel ?? company?.phiLevel ?? 'minimal',
    letterheadStyle: style,
    letterhead:
      style === 'neutral'
        ? (company?.neutralLetterhead ?? DEFAULT_NEUTRAL_LETTERHEAD)
        : (office?.letterhead ?? company?.letterhead ?? { name: companyName, address: [] }),
    requireDownloadReason: company?.requireDownloadReason ?? false,
    ...(company?.timeZone ? { timeZone: company.timeZone } : {}),
  };
}
