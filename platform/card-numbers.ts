/**
 * Spotting a primary account number (card number) in text, for the api's backstop (domain/card-number.ts) and the
 * logger (a path that carries one is written redacted). Here, below everything, because the logger needs it.
 *
 * A run is digits joined by at most one space, dash or dot. Every window of 13–19 consecutive digits that starts
 * like a payment card (2–6: Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay) and passes the Luhn check
 * counts, so extra digits around a number ("4242424242424242 1") do not hide it. Ids must not trip it: a run that
 * touches a letter (a digit run inside a hex or base32 id) is not a card number, and digits joined across
 * separators count only when every group is short (4-4-4-4 grouping; a UUID's 8- and 12-digit groups are not).
 */
const RUN = /\d(?:[ .-]?\d)*/g;
const LETTER = /[A-Za-z]/;
const MAX_GROUP_WHEN_SEPARATED = 6;

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

function hasCardWindow(digits: string): boolean {
  for (let start = 0; start + 13 <= digits.length; start += 1) {
    if (!/[2-6]/.test(digits[start]!)) continue;
    for (let length = 13; length <= 19 && start + length <= digits.length; length += 1) {
      if (passesLuhn(digits.slice(start, start + length))) return true;
    }
  }
  return false;
}

function runHoldsCardNumber(run: string): boolean {
  const groups = run.split(/[ .-]/);
  // One long group (a number, perhaps with more digits beside it), or short groups joined as cards are printed.
  if (groups.some((group) => group.length >= 13 && hasCardWindow(group))) return true;
  return groups.every((group) => group.length <= MAX_GROUP_WHEN_SEPARATED) && hasCardWindow(groups.join(''));
}

/** Where card numbers are in `text`: [start, end) of each digit run holding one. */
export function cardNumberSpans(text: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  for (const match of text.matchAll(RUN)) {
    const start = match.index;
    const end = start + match[0].length;
    if (LETTER.test(text[start - 1] ?? '') || LETTER.test(text[end] ?? '')) continue;
    if (match[0].replace(/\D/g, '').length >= 13 && runHoldsCardNumber(match[0])) spans.push([start, end]);
  }
  return spans;
}

export function containsCardNumber(text: string): boolean {
  return cardNumberSpans(text).length > 0;
}

/** `text` with every card number replaced by `[REDACTED]`. */
export function redactCardNumbers(text: string): string {
  let redacted = text;
  for (const [start, end] of cardNumberSpans(text).reverse()) {
    redacted = `${redacted.slice(0, start)}[REDACTED]${redacted.slice(end)}`;
  }
  return redacted;
}
