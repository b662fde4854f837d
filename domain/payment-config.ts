/**
 * How a company (and its offices) take payments, and which configuration
 * applies to a given charge. Pure: the api and the workers share it.
 *
 * - `company` mode: the company's configuration applies to every office; offices may not override.
 * - `office` mode: each office has its own gateway account; its credentials and attestation are required.
 * - `hybrid` mode: an office may override any field; what it does not set comes from the company — except the
 *   gateway account (ACCOUNT_FIELDS), which is whole: an office with its own key has its own account id, signing
 *   secrets and attestation, else it uses the company's whole account.
 */
export const PAYMENT_MODES = ['company', 'office', 'hybrid'] as const;
export type PaymentMode = (typeof PAYMENT_MODES)[number];

export type Compliance =
  | { status: 'baa_signed'; reference: string; signedOn: string; attestedBy: string; attestedAt: string }
  | { status: 'exempt_1179'; rationale: string; attestedBy: string; attestedAt: string };

/** Plaintext view of one level's settings (secrets decrypted), every field optional. */
export interface PaymentSettings {
  secretKey?: string;
  publishableKey?: string;
  webhookSigningSecrets?: string[];
  accountId?: string;
  statementDescriptor?: string;
  defaultCurrency?: string;
  dunningPolicy?: string;
  compliance?: Compliance;
}

export const SETTING_FIELDS = [
  'secretKey',
  'publishableKey',
  'webhookSigningSecrets',
  'accountId',
  'statementDescriptor',
  'defaultCurrency',
  'dunningPolicy',
  'compliance',
] as const satisfies ReadonlyArray<keyof PaymentSettings>;
export type SettingField = (typeof SETTING_FIELDS)[number];

/** What identifies the gateway account: in office mode these must be the office's own. */
export const ACCOUNT_FIELDS: readonly SettingField[] = [
  'secretKey',
  'accountId',
  'webhookSigningSecrets',
  'compliance',
];

export interface CompanyPaymentLevel {
  companyId: string;
  mode: PaymentMode;
  settings: PaymentSettings;
}

export interface OfficePaymentLevel {
  officeId: string;
  settings: PaymentSettings;
}

export type FieldSource = 'company' | 'office';

export type ResolvedPaymentConfig =
  | { ok: true; mode: PaymentMode; settings: PaymentSettings; sources: Partial<Record<SettingField, FieldSource>> }
  | {
      ok: false;
      code: 'payment_config_missing' | 'office_payment_config_missing' | 'office_account_incomplete';
      message: string;
      missing: SettingField[];
    };

function has(settings: PaymentSettings | undefined, field: SettingField): boolean {
  const value = settings?.[field];
  return value !== undefined && !(Array.isArray(value) && value.length === 0);
}

/**
 * The effective configuration for a charge at the company (no office) or at
 * one office, with the source of every field. Fails with a reason naming what
 * is missing, and where.
 */
export function resolvePaymentConfig(
  company: CompanyPaymentLevel | undefined,
  office?: OfficePaymentLevel,
): ResolvedPaymentConfig {
  if (!company) {
    return {
      ok: false,
      code: 'payment_config_missing',
      message: 'the company has no payment configuration',
      missing: ['secretKey'],
    };
  }
  const settings: PaymentSettings = {};
  const sources: Partial<Record<SettingField, FieldSource>> = {};
  const take = (field: SettingField, from: FieldSource) => {
    const level = from === 'office' ? office?.settings : company.settings;
    if (!has(level, field)) return;
    (settings as Record<SettingField, unknown>)[field] = level![field];
    sources[field] = from;
  };

  if (company.mode === 'office') {
    if (!office) {
      return {
        ok: false,
        code: 'payment_config_missing',
        message: 'the company takes payments per office; name the office',
        missing: ['secretKey'],
      };
    }
    if (!has(office.settings, 'secretKey')) {
      return {
        ok: false,
        code: 'office_payment_config_missing',
        message: `office ${office.officeId} has no gateway secret key of its own (the company takes payments per office)`,
        missing: ['secretKey'],
      };
    }
    // The gateway account (and its attestation) is the office's alone; other settings may fall back to the company's.
    for (const field of SETTING_FIELDS) {
      take(field, ACCOUNT_FIELDS.includes(field) || has(office.settings, field) ? 'office' : 'company');
    }
  } else if (company.mode === 'hybrid' && office) {
    const ownAccount = has(office.settings, 'secretKey');
    // Never the company's attestation or signing secrets for the office's account (data written before the api
    // refused that still exists), and never a stray office attestation for the company's account.
    const missing = ownAccount ? ACCOUNT_FIELDS.filter((field) => !has(office.settings, field)) : [];
    if (missing.length > 0) {
      return {
        ok: false,
        code: 'office_account_incomplete',
        message: `office ${office.officeId} has a gateway key of its own but not its own ${missing.join(', ')}`,
        missing,
      };
    }
    for (const field of SETTING_FIELDS) {
      const fromOffice = ACCOUNT_FIELDS.includes(field) ? ownAccount : has(office.settings, field);
      take(field, fromOffice ? 'office' : 'company');
    }
  } else {
    for (const field of SETTING_FIELDS) take(field, 'company');
  }
  if (!settings.secretKey) {
    return {
      ok: false,
      code: 'payment_config_missing',
      message: 'no gateway secret key is configured',
      missing: ['secretKey'],
    };
  }
  return { ok: true, mode: company.mode, settings, sources };
}

/** `sk_test_…4242`: enough to tell keys apart, never enough to use one. */
export function maskSecret(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const prefix = /^(sk|rk|pk|whsec|acct)_(test_|live_)?/.exec(value)?.[0] ?? '';
  return `${prefix}…${value.slice(-4)}`;
}
