import { z } from 'zod';
import { isIsoCurrency } from './money';
import { PAYMENT_MODES, SETTING_FIELDS, maskSecret, type PaymentSettings, type SettingField } from './payment-config';

/** Never echoes the value it rejects: a secret in an error message is a leak. */
const secretKey = z.string().superRefine((value, ctx) => {
  if (/^pk_/.test(value)) {
    ctx.addIssue({ code: 'custom', message: 'is a publishable key (pk_…); a secret key (sk_… or rk_…) belongs here' });
  } else if (!/^(sk|rk)_(test|live)_[A-Za-z0-9]{8,247}$/.test(value)) {
    ctx.addIssue({
      code: 'custom',
      message: 'must be a Stripe secret key (sk_test_…, sk_live_…, or a restricted rk_ key)',
    });
  }
});
const publishableKey = z.string().superRefine((value, ctx) => {
  if (/^(sk|rk)_/.test(value)) {
    ctx.addIssue({ code: 'custom', message: 'is a secret key; only a publishable key (pk_…) belongs here' });
  } else if (!/^pk_(test|live)_[A-Za-z0-9]{8,247}$/.test(value)) {
    ctx.addIssue({ code: 'custom', message: 'must be a Stripe publishable key (pk_test_… or pk_live_…)' });
  }
});
const webhookSecret = z
  .string()
  .regex(/^whsec_[A-Za-z0-9]{8,128}$/, 'must be a Stripe webhook signing secret (whsec_…)');

export const attestationSchema = z.discriminatedUnion('status', [
  z
    .object({
      status: z.literal('baa_signed'),
      reference: z.string().min(1).max(200),
      signedOn: z.string().date('must be a date (YYYY-MM-DD)'),
    })
    .strict(),
  z
    .object({
      status: z.literal('exempt_1179'),
      rationale: z
        .string()
        .trim()
        .min(40, 'must explain, in at least 40 characters, why section 1179 applies')
        .max(2_000),
    })
    .strict(),
]);

const settingsShape = {
  credentials: z
    .object({
      secretKey: secretKey.nullable().optional(),
      publishableKey: publishableKey.nullable().optional(),
      // Two during a rotation: the old and the new signing secret both verify.
      webhookSigningSecrets: z.array(webhookSecret).min(1).max(2).nullable().optional(),
      accountId: z
        .string()
        .regex(/^acct_[A-Za-z0-9]{8,64}$/, 'must be a Stripe account id (acct_…)')
        .nullable()
        .optional(),
    })
    .strict()
    .default({}),
  // Stripe's rules: 5–22 characters, at least one letter, none of < > \ ' " *.
  statementDescriptor: z
    .string()
    .regex(/^(?=.*[A-Za-z])[^<>\\'"*]{5,22}$/, 'must be 5–22 characters with a letter and none of < > \\ \' " *')
    .nullable()
    .optional(),
  defaultCurrency: z
    .string()
    .refine((c) => /^[a-zA-Z]{3}$/.test(c) && isIsoCurrency(c), 'must be a three-letter ISO 4217 currency code')
    .transform((c) => c.toLowerCase())
    .nullable()
    .optional(),
  dunningPolicy: z
    .string()
    .regex(/^[a-z0-9_-]{1,64}$/, 'must be a dunning policy id')
    .nullable()
    .optional(),
  // The attestation for the account these credentials name, in the same write (a new office account needs both).
  attestation: attestationSchema.optional(),
};

export const companyPaymentConfigSchema = z
  .object({ gateway: z.literal('stripe').default('stripe'), mode: z.enum(PAYMENT_MODES), ...settingsShape })
  .strict();
export const officePaymentConfigSchema = z
  .object({ gateway: z.literal('stripe').default('stripe'), ...settingsShape })
  .strict();
export type OfficePaymentConfigInput = z.infer<typeof officePaymentConfigSchema>;
export type AttestationInput = z.infer<typeof attestationSchema>;

/** A Stripe key's environment: live keys belong to production, test keys to everything else. */
export function keyEnvironmentProblem(
  key: string | null | undefined,
  runtime: { production: boolean; allowTestKeysInProduction: boolean },
): string | undefined {
  if (!key) return undefined;
  const live = /^(sk|rk|pk)_live_/.test(key);
  if (runtime.production && !live && !runtime.allowTestKeysInProduction) {
    return 'is a test key; production refuses test keys (set ALLOW_TEST_KEYS_IN_PRODUCTION for a staging deployment)';
  }
  if (!runtime.production && live) return 'is a live key; live keys are accepted only in production';
  return undefined;
}

/** One level's settings as anyone may see them: secrets masked, never whole. */
export function maskedSettings(settings: PaymentSettings) {
  return {
    credentials: {
      secretKey: maskSecret(settings.secretKey) ?? null,
      publishableKey: settings.publishableKey ?? null,
      webhookSigningSecrets: settings.webhookSigningSecrets?.map((s) => maskSecret(s)!) ?? [],
      accountId: maskSecret(settings.accountId) ?? null,
    },
    statementDescriptor: settings.statementDescriptor ?? null,
    defaultCurrency: settings.defaultCurrency ?? null,
    dunningPolicy: settings.dunningPolicy ?? null,
    compliance: settings.compliance ?? null,
  };
}

function maskedValue(field: SettingField, settings: PaymentSettings): string | null {
  const value = settings[field];
  if (value === undefined) return null;
  if (field === 'compliance') return settings.compliance?.status ?? null;
  if (Array.isArray(value)) return value.map((v) => maskSecret(v)).join(',');
  if (field === 'secretKey' || field === 'accountId') return maskSecret(String(value)) ?? null;
  return String(value);
}

/** Before/after of every field that changed, masked, for the audit trail. */
export function settingsChanges(
  before: PaymentSettings,
  after: PaymentSettings,
): Array<{ field: string; before: string | null; after: string | null }> {
  return SETTING_FIELDS.filter((field) => JSON.stringify(before[field]) !== JSON.stringify(after[field])).map(
    (field) => ({ field, before: maskedValue(field, before), after: maskedValue(field, after) }),
  );
}
