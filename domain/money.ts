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

/**
 * Stripe's minimum charge amounts (docs.stripe.com/currencies, "Minimum and maximum charge amounts"), in minor units.
 * A bill above zero and below this is never sent to the gateway (it would fail like a decline): it is carried onto the
 * next bill (docs/billing-rules.md). Currencies not listed take 50 minor units, Stripe's USD rule.
 */
const STRIPE_MINIMUM_CHARGE: Readonly<Record<string, number>> = {
  usd: 50,
  aed: 200,
  aud: 50,
  bgn: 100,
  brl: 50,
  cad: 50,
  chf: 50,
  czk: 1_500,
  dkk: 250,
  eur: 50,
  gbp: 30,
  hkd: 400,
  huf: 17_500,
  inr: 50,
  jpy: 50,
  mxn: 1_000,
  myr: 200,
  nok: 300,
  nzd: 50,
  pln: 200,
  ron: 200,
  sek: 300,
  sgd: 50,
  thb: 1_000,
};

export function minimumChargeAmount(currency: string): number {
  return STRIPE_MINIMUM_CHARGE[currency.toLowerCase()] ?? 50;
}
