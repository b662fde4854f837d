/** ISO 4217 codes as the runtime's ICU knows them (a maintained list, not ours). */
const ISO_CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency').map((c) => c.toLowerCase()));

export function isIsoCurrency(code: string): boolean {
  return ISO_CURRENCIES.has(code.toLowerCase());
}
