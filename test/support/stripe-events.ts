import Stripe from 'stripe';
import type { InProcessSystem } from './in-process';

/** A Stripe event as Stripe sends it to a webhook endpoint, around `object` (its `data.object`). */
export function stripeEventEnvelope(
  id: string,
  type: string,
  object: Record<string, unknown>,
  created = Math.floor(Date.now() / 1000),
) {
  return {
    id,
    object: 'event',
    api_version: '2025-08-27.basil',
    created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}

/**
 * POSTs `event` (an object, or a payload string sent as is) to the Stripe webhook endpoint of `configId` at
 * `url`, signed with `secret` (at `timestamp`, when given) as Stripe signs it. `header` replaces that
 * signature header; null sends none.
 */
export async function deliverSigned(
  url: string,
  configId: string,
  event: object | string,
  options: { secret: string; timestamp?: number; header?: string | null },
): Promise<Response> {
  const payload = typeof event === 'string' ? event : JSON.stringify(event);
  const header =
    options.header === undefined
      ? Stripe.webhooks.generateTestHeaderString({
          payload,
          secret: options.secret,
          ...(options.timestamp ? { timestamp: options.timestamp } : {}),
        })
      : options.header;
  return fetch(`${url}/v1/webhooks/stripe/${configId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json; charset=utf-8', ...(header ? { 'stripe-signature': header } : {}) },
    body: payload,
  });
}

/**
 * Gives the company a Stripe configuration with these webhook signing secrets and
 * a §1179 attestation, through the API as an admin would.
 */
export async function configureStripeWebhooks(
  system: InProcessSystem,
  companyId: string,
  adminToken: string,
  credentials: { secretKey: string; webhookSigningSecrets: string[] },
): Promise<void> {
  const configure = async (method: string, path: string, body: unknown) => {
    const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status).toBeLessThan(300);
  };
  await configure('PUT', '/payment-config', { mode: 'company', credentials });
  await configure('POST', '/payment-config/attestation', {
    status: 'exempt_1179',
    rationale: 'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).',
  });
}
