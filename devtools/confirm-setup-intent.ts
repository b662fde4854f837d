import Stripe from 'stripe';
import { resolvePaymentConfig } from '../domain/payment-config';
import type { Database } from '../models';
import { loadPaymentLevels } from '../models/payment-config';

/**
 * Development only: what the payer's browser and Stripe do after `POST …/payment-methods/setup-intents` — Stripe.js
 * confirms the SetupIntent with a card, and Stripe sends `setup_intent.succeeded` — done from a terminal. The event is
 * signed with the configuration's own webhook signing secret and delivered to the api's endpoint for it, so it goes
 * through the same verification, binding and worker as Stripe's would.
 */
export async function confirmSetupIntentLocally(
  db: Pick<Database, 'models'>,
  input: { companyId: string; setupIntentId: string; paymentMethod: string; apiUrl: string },
): Promise<{ status: number; body: string }> {
  const { models } = db;
  const intent = await models.SetupIntent.findOne({ _id: input.setupIntentId, companyId: input.companyId }).lean();
  if (!intent) throw new Error(`no SetupIntent ${input.setupIntentId} was created for ${input.companyId}`);
  const customer = await models.StripeCustomer.findOne({
    companyId: input.companyId,
    customerRef: intent.customerRef,
    configurationId: intent.configurationId,
  }).lean();
  if (!customer) throw new Error(`no Stripe customer is recorded for payer ${intent.customerRef}`);
  const levels = await loadPaymentLevels(models, { companyId: input.companyId, officeId: intent.officeId });
  const resolved = resolvePaymentConfig(levels.company, levels.office);
  const secret = resolved.ok ? resolved.settings.webhookSigningSecrets?.[0] : undefined;
  if (!secret) throw new Error(`${intent.configurationId} has no webhook signing secret to sign the event with`);

  const payload = JSON.stringify({
    id: `evt_dev${Date.now()}`,
    object: 'event',
    created: Math.floor(Date.now() / 1000),
    livemode: intent.livemode,
    type: 'setup_intent.succeeded',
    data: {
      object: {
        id: intent._id,
        object: 'setup_intent',
        status: 'succeeded',
        usage: 'off_session',
        customer: String(customer.stripeCustomerId),
        payment_method: input.paymentMethod,
      },
    },
  });
  const response = await fetch(`${input.apiUrl}/v1/webhooks/stripe/${intent.configurationId}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret }),
    },
    body: payload,
  });
  return { status: response.status, body: await response.text() };
}
