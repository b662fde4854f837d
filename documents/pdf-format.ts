import { minorUnitDigits } from '../domain/money';

/** What the PDF prints for money, quantities and card brands. */

/**
 * Formats minor units of one currency as a US practice prints them ("$1,234.50", "€30.00", "JPY 3,000"). The scale is
 * Stripe's minor unit (domain/money.ts), never ICU's digits: they disagree for HUF, ISK, IDR and others, where ICU's
 * would print 100 times the amount.
 */
export function moneyFormatter(
  currency: string,
  canPrint: (text: string) => boolean = () => true,
): (minorUnits: number) => string {
  const { bySymbol, byCode, scale } = currencyFormats(currency.toUpperCase());
  return (minorUnits) => {
    const major = minorUnits / scale;
    const text = bySymbol.format(major);
    // A symbol the font cannot draw prints as the ISO code instead.
    return canPrint(text) ? text : byCode.format(major);
  };
}

interface CurrencyFormats {
  bySymbol: Intl.NumberFormat;
  byCode: Intl.NumberFormat;
  scale: number;
}

/** Made once per currency and process: an `Intl.NumberFormat` is costly to make and immutable once made. */
const formatsByCurrency = new Map<string, CurrencyFormats>();

function currencyFormats(code: string): CurrencyFormats {
  let formats = formatsByCurrency.get(code);
  if (!formats) {
    const digits = minorUnitDigits(code);
    const options = { style: 'currency', currency: code, minimumFractionDigits: digits, maximumFractionDigits: digits };
    formats = {
      bySymbol: new Intl.NumberFormat('en-US', options as Intl.NumberFormatOptions),
      byCode: new Intl.NumberFormat('en-US', { ...options, currencyDisplay: 'code' } as Intl.NumberFormatOptions),
      scale: 10 ** digits,
    };
    formatsByCurrency.set(code, formats);
  }
  return formats;
}

const QUANTITY = new Intl.NumberFormat('en-US', { maximumFractionDigits: 3 });

export function formatQuantity(quantity: number): string {
  return QUANTITY.format(quantity);
}

const BRAND_NAMES: Record<string, string> = {
  visa: 'VISA',
  mastercard: 'Mastercard',
  amex: 'American Express',
  discover: 'Discover',
  diners: 'Diners Club',
  jcb: 'JCB',
  unionpay: 'UnionPay',
  cartes_bancaires: 'Cartes Bancaires',
  eftpos_au: 'eftpos',
  interac: 'Interac',
  card: 'Card',
};

export function cardBrandName(brand: string): string {
  return BRAND_NAMES[brand] ?? brand.replace(/_/g, ' ').toUpperCase();
}
