import { containsCardNumber } from '../platform/card-numbers';

/**
 * Spotting a primary account number (card number) where none belongs (platform/card-numbers.ts says how).
 * Card data must never reach us; clients send Stripe PaymentMethod ids.
 */
export { containsCardNumber };

/**
 * A JSON integer past 2^53 (17–19 digits) lost digits when it was parsed, so its Luhn check cannot be trusted:
 * nothing we take is that large, so it counts as a possible card number.
 */
function numberMayBeCardNumber(value: number): boolean {
  if (!Number.isInteger(value)) return false;
  if (!Number.isSafeInteger(value)) return Math.abs(value) < 1e19;
  return containsCardNumber(String(value));
}

/** Looks at every string and number in a parsed JSON body, at any depth. */
export function bodyContainsCardNumber(value: unknown, depth = 0): boolean {
  if (depth > 32) return false;
  if (typeof value === 'string') return containsCardNumber(value);
  if (typeof value === 'number') return numberMayBeCardNumber(value);
  if (Array.isArray(value)) return value.some((item) => bodyContainsCardNumber(item, depth + 1));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).some(
      ([key, item]) => containsCardNumber(key) || bodyContainsCardNumber(item, depth + 1),
    );
  }
  return false;
}

/**
 * The parts of a request other than its body that could carry a card number: the path and query (decoded) and the
 * Idempotency-Key header.
 */
export function requestLineContainsCardNumber(url: string, idempotencyKey: string | undefined): boolean {
  let decoded = url;
  try {
    decoded = decodeURIComponent(url.replace(/\+/g, ' '));
  } catch {
    // A malformed escape: the raw text is still looked at.
  }
  return containsCardNumber(decoded) || containsCardNumber(url) || containsCardNumber(idempotencyKey ?? '');
}
