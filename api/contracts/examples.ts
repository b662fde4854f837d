import type { z } from 'zod';
import type { paymentRequestSchema } from '../../domain/payment-request';
import type { refundRequestSchema } from '../../domain/refund-request';
import type { planRequestSchema } from '../../domain/plan';
import type {
  companyInvoiceSettingsSchema,
  officeInvoiceSettingsSchema,
  payerProfileSchema,
} from '../../domain/invoice-settings';
import type {
  attestationSchema,
  companyPaymentConfigSchema,
  officePaymentConfigSchema,
} from '../../domain/payment-config-input';
import type { webhookEndpointCreateSchema, webhookEndpointUpdateSchema } from '../../domain/webhook-endpoint';
import type { setupIntentBody } from '../routes/payment-methods';
import type { billingSettingsBody, changeBody, clockBody, subscriptionBody } from '../routes/subscriptions';
import type { voidBody } from '../routes/invoices';
import type { replayBody } from '../routes/webhook-events';

/**
 * The request examples the OpenAPI document shows (attached with `withExamples` in the contracts), typed by what each
 * schema takes; test/unit/openapi-examples.test.ts parses every one with its schema. Ids have the shapes the api
 * makes; keys and secrets are placeholders, never real ones.
 */
type In<T extends z.ZodType> = z.input<T>;

const PAYMENT_ID = 'pay_01JEXAMP1E0000000000000000';
const PLAN_ID = 'plan_01JEXAMP1E0000000000000000';
const SAVED_METHOD_ID = 'spm_abcdefghijklmnopabcdefghijklmnop';
const NOW = '2026-03-01T15:04:05.000Z';

export const PAYMENT_EXAMPLE = {
  id: PAYMENT_ID,
  status: 'queued' as const,
  amount: 4500,
  currency: 'usd',
  officeId: 'office-east',
  serviceCategory: 'copay' as const,
  createdAt: NOW,
  updatedAt: NOW,
};

export const REQUEST_EXAMPLES = {
  createPayment: [
    {
      amount: 4500,
      currency: 'usd',
      customer: 'cus_PayerAccount42',
      paymentMethod: 'pm_card_visa',
      officeId: 'office-east',
      serviceCategory: 'copay',
    },
  ] satisfies In<ReturnType<typeof paymentRequestSchema>>[],
  createRefund: [{ amount: 1500, reason: 'requested_by_customer' }] satisfies In<
    ReturnType<typeof refundRequestSchema>
  >[],
  createSetupIntent: [{ customerRef: 'payer-1042', officeId: 'office-east' }] satisfies In<typeof setupIntentBody>[],
  createPlan: [
    {
      category: 'membership',
      name: 'Wellness membership',
      amount: 9900,
      currency: 'usd',
      interval: { unit: 'month', count: 1 },
      trialDays: 14,
    },
  ] satisfies In<ReturnType<typeof planRequestSchema>>[],
  createSubscription: [
    { planId: PLAN_ID, customerRef: 'payer-1042', paymentMethodId: SAVED_METHOD_ID, billingDayOfMonth: 1 },
  ] satisfies In<typeof subscriptionBody>[],
  changeSubscription: [
    { cancelAt: 'period_end' },
    { planId: PLAN_ID, prorationBehavior: 'create_prorations' },
    { pause: true },
  ] satisfies In<typeof changeBody>[],
  putBillingSettings: [
    { timeZone: 'America/Chicago', dunning: { retryDelaysDays: [3, 5, 7], finalState: 'unpaid' } },
  ] satisfies In<typeof billingSettingsBody>[],
  testClock: [{ frozenTime: NOW }] satisfies In<typeof clockBody>[],
  voidInvoice: [{ reason: 'issued_in_error' }] satisfies In<typeof voidBody>[],
  putCompanyInvoiceSettings: [
    {
      numberPrefix: 'NRTH',
      phiLevel: 'minimal',
      letterhead: { name: 'Northside Family Practice', address: ['100 Main St', 'Springfield, IL 62701'] },
      letterheadStyle: 'practice',
      timeZone: 'America/Chicago',
    },
  ] satisfies In<typeof companyInvoiceSettingsSchema>[],
  putOfficeInvoiceSettings: [{ phiLevel: 'standard', letterheadStyle: 'neutral' }] satisfies In<
    typeof officeInvoiceSettingsSchema
  >[],
  putPayerProfile: [
    { name: 'Alex Example', billingAddress: ['1 Example Way', 'Springfield, IL 62701'], email: 'alex@example.com' },
  ] satisfies In<typeof payerProfileSchema>[],
  putCompanyPaymentConfig: [
    {
      mode: 'company',
      credentials: {
        secretKey: 'sk_test_YourSecretKey',
        publishableKey: 'pk_test_YourPublishableKey',
        webhookSigningSecrets: ['whsec_YourSigningSecret'],
      },
      statementDescriptor: 'NORTHSIDE CLINIC',
      defaultCurrency: 'usd',
    },
  ] satisfies In<typeof companyPaymentConfigSchema>[],
  putOfficePaymentConfig: [{ statementDescriptor: 'NORTHSIDE EAST' }] satisfies In<typeof officePaymentConfigSchema>[],
  attestPaymentConfig: [
    { status: 'baa_signed', reference: 'BAA-2026-017', signedOn: '2026-02-15' },
    {
      status: 'exempt_1179',
      rationale: 'Payment processing only: the gateway receives amounts and opaque ids, no PHI (HIPAA section 1179).',
    },
  ] satisfies In<typeof attestationSchema>[],
  replayWebhookEvent: [{ reason: 'payment_created_late' }] satisfies In<typeof replayBody>[],
  createWebhookEndpoint: [
    {
      url: 'https://billing.example.com/hooks/hipaa-billing',
      enabledEvents: ['payment.succeeded', 'payment.failed', 'refund.succeeded'],
    },
    { url: 'https://east.example.com/hooks', enabledEvents: ['*'], officeId: 'office-east' },
  ] satisfies In<typeof webhookEndpointCreateSchema>[],
  updateWebhookEndpoint: [{ disabled: true }, { enabledEvents: ['*'] }] satisfies In<
    typeof webhookEndpointUpdateSchema
  >[],
};
