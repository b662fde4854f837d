import { z } from 'zod';
import { PAYMENT_MODES, SETTING_FIELDS } from '../../domain/payment-config';
import {
  attestationSchema,
  companyPaymentConfigSchema,
  officePaymentConfigSchema,
} from '../../domain/payment-config-input';
import { companyParams, officeParams } from '../routes/payment-config';
import { failure, type OperationSpec, timestamp, companyNotFound, withExamples } from '../openapi/spec';
import { REQUEST_EXAMPLES } from './examples';

/** An attestation as recorded: what was attested, by whom (a user) and when. */
const compliance = z.discriminatedUnion('status', [
  z.strictObject({
    status: z.literal('baa_signed'),
    reference: z.string(),
    signedOn: z.string().meta({ format: 'date' }),
    attestedBy: z.string(),
    attestedAt: timestamp,
  }),
  z.strictObject({
    status: z.literal('exempt_1179'),
    rationale: z.string(),
    attestedBy: z.string(),
    attestedAt: timestamp,
  }),
]);

/** One level's settings as anyone may see them (maskedSettings): secrets masked (`sk_test_…4242`), never whole. */
const maskedSettings = {
  credentials: z.strictObject({
    secretKey: z.string().nullable().meta({ description: 'Masked: its prefix and last four characters.' }),
    publishableKey: z.string().nullable(),
    webhookSigningSecrets: z.array(z.string()).meta({ description: 'Masked; two during a rotation.' }),
    accountId: z.string().nullable().meta({ description: "Masked; Stripe's answer for the secret key." }),
  }),
  statementDescriptor: z.string().nullable(),
  defaultCurrency: z.string().nullable(),
  dunningPolicy: z.string().nullable(),
  compliance: compliance.nullable().meta({ description: 'The BAA or section 1179 attestation, if any.' }),
};

const gateway = z.literal('stripe');
const mode = z.enum(PAYMENT_MODES);

const companyConfigView = z.strictObject({
  companyId: z.string(),
  mode: mode.nullable().meta({ description: 'null until the company is configured.' }),
  gateway,
  ...maskedSettings,
});
const officeConfigView = z.strictObject({ companyId: z.string(), officeId: z.string(), gateway, ...maskedSettings });

/** The configuration a charge at the office would use, with each field's source, or why there is none. */
const effectiveConfigView = z.union([
  z.strictObject({
    companyId: z.string(),
    officeId: z.string(),
    mode,
    usable: z.boolean().meta({ description: 'False while no attestation applies (`problem` says so).' }),
    problem: z.strictObject({ code: z.literal('gateway_not_attested'), message: z.string() }).optional(),
    gateway,
    ...maskedSettings,
    sources: z
      .partialRecord(z.enum(SETTING_FIELDS), z.enum(['company', 'office']))
      .meta({ description: 'Which level each field comes from.' }),
  }),
  z.strictObject({
    companyId: z.string(),
    officeId: z.string(),
    usable: z.literal(false),
    problem: z.strictObject({
      code: z.enum(['payment_config_missing', 'office_payment_config_missing', 'office_account_incomplete']),
      message: z.string(),
      missing: z.array(z.enum(SETTING_FIELDS)),
    }),
  }),
]);

const WRITE = 'payment_config:write';
const READ = 'payment_config:read';
const TAG = 'Payment configuration';

const shredded = failure("The company's data was crypto-shredded and cannot be read.", 'data_shredded');
const byUserOnly = failure(
  'An attestation is made by a person (a user token), not by a service.',
  'attestation_requires_user',
);
const keyRefused = failure(
  'Stripe refused the secret key, or it belongs to another account than the one named; nothing was saved.',
  'secret_key_refused',
  'account_mismatch',
);
const gatewayOrAudit = failure(
  'Stripe could not be asked which account the key belongs to (nothing was saved), or the change is saved but its audit events wait for the outbox sweep (no retry is needed).',
  'gateway_unavailable',
  'audit_unavailable',
);
const officeRefused = (...codes: string[]) =>
  failure(
    "The company takes payments at company level (offices may not override), or the office's own gateway account would be incomplete (`details` names what it lacks).",
    ...codes,
  );

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'put',
    route: '/v1/companies/:companyId/payment-config',
    operationId: 'putCompanyPaymentConfig',
    summary: "Set the company's payment configuration",
    description:
      "Sets the mode and the company-level gateway settings; `null` removes a setting, an absent field leaves it. The account id saved with a new key is Stripe's answer for it. An attestation may come in the same write; without one, the attestation goes when the key moves to another account. Audited (`payment_config.updated`, and `payment_config.attested` with an attestation).",
    tag: TAG,
    permission: WRITE,
    params: companyParams,
    body: withExamples(companyPaymentConfigSchema, ...REQUEST_EXAMPLES.putCompanyPaymentConfig),
    responses: {
      200: { description: 'What the company level holds now, masked.', schema: companyConfigView.extend({ mode }) },
      403: byUserOnly,
      404: companyNotFound,
      410: shredded,
      422: keyRefused,
      503: gatewayOrAudit,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/payment-config',
    operationId: 'getCompanyPaymentConfig',
    summary: "Read the company's payment configuration, masked",
    description: 'Audited (`payment_config.read`) before anything is shown.',
    tag: TAG,
    permission: READ,
    params: companyParams,
    responses: {
      200: { description: 'The company level, masked.', schema: companyConfigView },
      404: companyNotFound,
      410: shredded,
    },
  },
  {
    method: 'put',
    route: '/v1/companies/:companyId/offices/:officeId/payment-config',
    operationId: 'putOfficePaymentConfig',
    summary: "Set an office's payment configuration",
    description:
      "In `office` mode the office's own gateway account; in `hybrid` mode any override, an account of its own being whole (key, signing secrets and attestation together). As the company PUT otherwise.",
    tag: TAG,
    permission: WRITE,
    params: officeParams,
    body: withExamples(officePaymentConfigSchema, ...REQUEST_EXAMPLES.putOfficePaymentConfig),
    responses: {
      200: { description: 'What the office level holds now, masked.', schema: officeConfigView },
      403: byUserOnly,
      404: companyNotFound,
      409: officeRefused('office_override_not_allowed', 'office_account_incomplete'),
      410: shredded,
      422: keyRefused,
      503: gatewayOrAudit,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/offices/:officeId/payment-config',
    operationId: 'getOfficePaymentConfig',
    summary: "Read an office's own payment configuration, masked",
    description:
      'Only what the office level itself holds; `…/effective` shows what applies. Audited (`payment_config.read`).',
    tag: TAG,
    permission: READ,
    params: officeParams,
    responses: {
      200: { description: 'The office level, masked.', schema: officeConfigView },
      404: companyNotFound,
      410: shredded,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/offices/:officeId/payment-config/effective',
    operationId: 'getEffectivePaymentConfig',
    summary: 'The configuration a charge at an office would use',
    description:
      'Company and office levels resolved, each field with its source, masked; or why none is usable. Audited (`payment_config.read`).',
    tag: TAG,
    permission: READ,
    params: officeParams,
    responses: {
      200: { description: 'The effective configuration, or the problem.', schema: effectiveConfigView },
      404: companyNotFound,
      410: shredded,
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/payment-config/attestation',
    operationId: 'attestCompanyPaymentConfig',
    summary: "Attest the company's gateway account (BAA signed, or section 1179 exempt)",
    description: 'Made by a person (a user token). Audited (`payment_config.attested`).',
    tag: TAG,
    permission: WRITE,
    params: companyParams,
    body: withExamples(attestationSchema, ...REQUEST_EXAMPLES.attestPaymentConfig),
    responses: {
      201: {
        description: 'Recorded.',
        schema: z.strictObject({ companyId: z.string(), compliance }),
      },
      403: byUserOnly,
      404: companyNotFound,
      410: shredded,
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/offices/:officeId/payment-config/attestation',
    operationId: 'attestOfficePaymentConfig',
    summary: "Attest an office's own gateway account",
    description:
      'Only in `office` or `hybrid` mode, for an office with a gateway key of its own. Made by a person (a user token). Audited (`payment_config.attested`).',
    tag: TAG,
    permission: WRITE,
    params: officeParams,
    body: withExamples(attestationSchema, ...REQUEST_EXAMPLES.attestPaymentConfig),
    responses: {
      201: {
        description: 'Recorded.',
        schema: z.strictObject({ companyId: z.string(), officeId: z.string(), compliance }),
      },
      403: byUserOnly,
      404: companyNotFound,
      409: officeRefused('office_override_not_allowed', 'office_account_incomplete'),
      410: shredded,
    },
  },
];
