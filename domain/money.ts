/** ISO 4217 codes as the runtime's ICU knows them (a maintained list, not ours). */
const ISO_CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency').map((c) => c.toLowerCase()));

/** Money is integer minor units plus a lowercase ISO 4217 currency code, as Stripe takes it. */
export interface Money {
  amount: number;
  currency: string;
}

export function isIsoCurrency(code: string): boolean {
  return ISO_CURRENCIES.has(code.toLowerCase());
}

export function formatMoney(money: Money, locale = 'en-US'): string {
  const formatter = new Intl.NumberFormat(locale, { style: 'currency', currency: money.currency.toUpperCase() });
  const digits = formatter.resolvedOptions().maximumFractionDigits ?? 2;
  return formatter.format(money.amount / 10 ** digits);
}
