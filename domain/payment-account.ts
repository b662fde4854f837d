import { ACCOUNT_FIELDS, type PaymentMode, type PaymentSettings, type SettingField } from './payment-config';

function has(settings: PaymentSettings, field: SettingField): boolean {
  const value = settings[field];
  return value !== undefined && !(Array.isArray(value) && value.length === 0);
}

/**
 * What an office level lacks to be a gateway account of its own, in its company's mode, or undefined when nothing.
 * `hybrid`: all or nothing — an office holding any of key, account id, signing secrets or attestation must hold all
 * four, so it never borrows the company's attestation or signing secrets for its own account (nor lends its own to
 * the company's). `office`: an attestation needs the office's own key (the rest is checked where the key is required).
 */
export function officeAccountProblem(
  mode: PaymentMode,
  settings: PaymentSettings,
): { missing: SettingField[] } | undefined {
  if (mode === 'hybrid') {
    const missing = ACCOUNT_FIELDS.filter((field) => !has(settings, field));
    return missing.length > 0 && missing.length < ACCOUNT_FIELDS.length ? { missing } : undefined;
  }
  if (mode === 'office' && has(settings, 'compliance') && !has(settings, 'secretKey')) {
    return { missing: ['secretKey'] };
  }
  return undefined;
}

/** Two account ids name the same account unless both are known and differ. */
export function accountIdsAgree(a: string | undefined, b: string | undefined): boolean {
  return a === undefined || b === undefined || a === b;
}

/**
 * Whether a level's attestation still applies after an update: it attests one gateway account, and the account id
 * is how we know which. A new (or first, or removed) key keeps it only when the same account id is known before and
 * after; the same key keeps it unless the account id changes from one known value to another.
 */
export function attestationKept(before: PaymentSettings, after: PaymentSettings): boolean {
  if (before.secretKey !== after.secretKey) {
    return before.accountId !== undefined && before.accountId === after.accountId;
  }
  return accountIdsAgree(before.accountId, after.accountId);
}
