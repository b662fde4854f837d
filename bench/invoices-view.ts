/**
 * The `InvoiceView` of a stored invoice, built the way application/invoices/render-invoice.ts builds it (the same
 * domain functions: effective settings, then the minimizing `invoiceView`), for the invoices entry's baselines: the
 * data-bound replay renders each invoice from its plain reads, the bare render repeats one view. The entry checks
 * that both produce the product's bytes (its SHA-256s), so a drift here shows up as a failed run, not a wrong number.
 */
import { documentInput } from '../application/invoices/render-invoice';
import type { InvoiceView } from '../domain/invoice';
import { effectiveInvoiceSettings } from '../domain/invoice-settings';
import { invoiceView } from '../domain/invoice-view';
import type { InvoiceSettingsRecord } from '../models/invoice-settings.model';
import type { InvoiceRecord } from '../models/invoice.model';

export interface InvoiceViewSources {
  invoice: InvoiceRecord;
  companyName: string;
  /** The payer's printed account number (application/invoices/render-invoice.ts `payerAccount`). */
  account: string;
  settings: InvoiceSettingsRecord | null;
  /** The payer profile's name and billing address, decrypted (read at the `standard` PHI level only). */
  profile: { name: unknown; billingAddress: unknown } | null;
}

export function invoiceViewOf({ invoice, companyName, account, settings, profile }: InvoiceViewSources): InvoiceView {
  const effective = effectiveInvoiceSettings(companyName, settings ?? undefined);
  return invoiceView({
    document: documentInput(invoice, undefined),
    account,
    payer: profile ? { name: String(profile.name), billingAddress: addressOf(profile.billingAddress) } : {},
    phiLevel: effective.phiLevel,
    letterhead: effective.letterhead,
  });
}

function addressOf(value: unknown): string[] {
  try {
    const parsed: unknown = JSON.parse(String(value));
    return Array.isArray(parsed) ? parsed.filter((line): line is string => typeof line === 'string') : [];
  } catch {
    return [];
  }
}
