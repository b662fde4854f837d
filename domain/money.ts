/** ISO 4217 codes as the runtime's ICU knows them (a maintained list, not ours). */
const ISO_CURRENCIES: ReadonlySet<string> = new Set(Intl.supportedValuesOf('currency').map((c) => c.toLowerCase()));

export function isIsoCurrency(code: string): boolean {
  return ISO_CURRENCIES.has(code.toLowerCase());
}

/**
 * Stripe's minor units (docs.stripe.com/currencies): what an amount of 1 means in the API, which is how every amount
 * here is stored. ICU disagrees for some currencies (it says 0 decimals for HUF, ISK, IDR, PKR, …, where Stripe's API
 * counts two: ISK 500 is 5 króna), so ICU's digits must never scale a stored amount.
 */
const STRIPE_ZERO_DECIMAL: ReadonlySet<string> = new Set([
  'bif',
  'clp',
  'djf',
  'gnf',
  'jpy',
  'kmf',
  'krw',
  'mga',
  'pyg',
  'rwf',
  'ugx',
  'vnd',
  'vuv',
  'xaf',
  'xof',
  'xpf',
]);
const STRIPE_THREE_DECIMAL: ReadonlySet<string> = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

/** How many decimal digits one of the currency's minor units is (Stripe's table): 0, 2 or 3. */
export function minorUnitDigits(currency: string): 0 | 2 | 3 {
  const code = currency.toLowerCase();
  if (STRIPE_ZERO_DECIMAL.has(code)) return 0;
  if (STRIPE_THREE_DECIMAL.has(code)) return 3;
  return 2;
}
