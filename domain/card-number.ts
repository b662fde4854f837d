/**
 * Spotting a primary account number (card number) where none belongs: 13–19
 * digits, optionally grouped by spaces or dashes, that pass the Luhn check.
 * Card data must never reach us; clients send Stripe PaymentMethod ids.
 */
const CANDIDATE = /(?:\d[ -]?){12,18}\d/g;

function passesLuhn(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i += 1) {
    let digit = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
  }
  return sum % 10 === 0;
}

export function containsCardNumber(text: string): boolean {
  for (const match of text.matchAll(CANDIDATE)) {
    const digits = match[0].replace(/[ -]/g, '');
    if (digits.length >= 13 && digits.length <= 19 && passesLuhn(digits)) return true;
  }
  return false;
}

/** Looks at every string and number in a parsed JSON body, at any depth. */
export function bodyContainsCardNumber(value: unknown, depth = 0): boolean {
  if (depth > 32) return false;
  if (typeof value === 'string') return containsCardNumber(value);
  if (typeof value === 'number') return Number.isInteger(value) && containsCardNumber(String(value));
  if (Array.isArray(value)) return value.some((item) => bodyContainsCardNumber(item, depth + 1));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(
      ([key, item]) => containsCardNumber(key) || bodyContainsCardNumber(item, depth + 1),
    );
  }
  return false;
}
