/**
 * What the PDF prints for money, card brands and text. PDFKit's built-in Helvetica encodes WinAnsi (Windows-1252)
 * only, so text is folded to it here: accents that WinAnsi lacks lose their mark, anything else prints as "?",
 * instead of the wrong glyph.
 */

/** Windows-1252 characters outside Latin-1 that the standard fonts have glyphs for. */
const WIN_ANSI_EXTRA = new Set('€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ');

/** Latin letters that Unicode does not decompose into a base letter and a mark. */
const BASE_LETTER: Record<string, string> = { Ł: 'L', ł: 'l', Đ: 'D', đ: 'd', Ħ: 'H', ħ: 'h', ı: 'i' };

function isWinAnsi(char: string): boolean {
  const code = char.codePointAt(0) ?? 0;
  return (code >= 0x20 && code <= 0x7e) || (code >= 0xa0 && code <= 0xff) || WIN_ANSI_EXTRA.has(char);
}

export function toWinAnsi(text: string): string {
  let out = '';
  for (const char of text) {
    if (isWinAnsi(char)) {
      out += char;
      continue;
    }
    const folded = Array.from((BASE_LETTER[char] ?? char).normalize('NFKD').replace(/\p{M}/gu, ''));
    out += folded.length > 0 && folded.every(isWinAnsi) ? folded.join('') : '?';
  }
  return out;
}

/** Formats minor units of one currency as a US practice prints them ("$1,234.50", "€30.00", "JPY 3,000"). */
export function moneyFormatter(currency: string): (minorUnits: number) => string {
  const code = currency.toUpperCase();
  const bySymbol = new Intl.NumberFormat('en-US', { style: 'currency', currency: code });
  const byCode = new Intl.NumberFormat('en-US', { style: 'currency', currency: code, currencyDisplay: 'code' });
  // The currency's own minor-unit digits (2 for USD, 0 for JPY, 3 for KWD), as ICU knows them.
  const digits = bySymbol.resolvedOptions().maximumFractionDigits ?? 2;
  const scale = 10 ** digits;
  return (minorUnits) => {
    const major = minorUnits / scale;
    const text = bySymbol.format(major);
    // A symbol the standard fonts cannot draw (₹, ₩) prints as the ISO code instead.
    return Array.from(text).every(isWinAnsi) ? text : byCode.format(major);
  };
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
