import { z } from 'zod';
import { PHI_LEVELS, type Letterhead, type PhiLevel } from './invoice';
import { DEFAULT_INVOICE_NUMBER_PREFIX, INVOICE_NUMBER_PREFIX } from './invoice-number';

/**
 * A company's invoice settings (number prefix, PHI level, letterhead, whether downloads need a stated reason), and an
 * office's overrides (PHI level, letterhead). Request bodies are strict: an unknown field is refused, so nothing
 * clinical can ride along.
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

export const companyInvoiceSettingsSchema = z
  .object({
    numberPrefix: z
      .string()
      .regex(INVOICE_NUMBER_PREFIX, 'must be upper-case letters and digits, e.g. "DFP" or "DFP-EAST"')
      .default(DEFAULT_INVOICE_NUMBER_PREFIX),
    phiLevel: z.enum(PHI_LEVELS).default('minimal'),
    letterhead: letterheadSchema.optional(),
    requireDownloadReason: z.boolean().default(false),
  })
  .strict();
export type CompanyInvoiceSettings = z.infer<typeof companyInvoiceSettingsSchema>;

export const officeInvoiceSettingsSchema = z
  .object({ phiLevel: z.enum(PHI_LEVELS).optional(), letterhead: letterheadSchema.optional() })
  .strict();
export type OfficeInvoiceSettings = z.infer<typeof officeInvoiceSettingsSchema>;

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
  letterhead: Letterhead;
  requireDownloadReason: boolean;
}

/** The company's settings with the office's overrides; without settings: prefix INV, minimal, the company's name. */
export function effectiveInvoiceSettings(
  companyName: string,
  company?: Partial<CompanyInvoiceSettings>,
  office?: OfficeInvoiceSettings,
): EffectiveInvoiceSettings {
  return {
    numberPrefix: company?.numberPrefix ?? DEFAULT_INVOICE_NUMBER_PREFIX,
    phiLevel: office?.phiLevel ?? company?.phiLevel ?? 'minimal',
    letterhead: office?.letterhead ?? company?.letterhead ?? { name: companyName, address: [] },
    requireDownloadReason: company?.requireDownloadReason ?? false,
  };
}
