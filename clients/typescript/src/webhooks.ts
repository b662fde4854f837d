import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { webhooks } from './schema';

/** Every event we push, by type: `payment.succeeded`, `refund.failed`, `invoice.paid`, … (the document's webhooks). */
export type WebhookEventType = keyof webhooks;

/** The body of one event type, as the OpenAPI document describes it. */
export type WebhookEventOf<T extends WebhookEventType> =
  webhooks[T]['post']['requestBody']['content']['application/json'];

/** Any event we push; narrow it on `type`. */
export type WebhookEvent = { [T in WebhookEventType]: WebhookEventOf<T> }[WebhookEventType];

/** Headers as fetch (`Headers`), Node (`IncomingHttpHeaders`) or a plain object give them. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export { WebhookVerificationError };

/**
 * Verifies one of our outgoing webhooks with the `standardwebhooks` library (Standard Webhooks: `webhook-id`,
 * `webhook-timestamp`, `webhook-signature`) and returns its event. Throws `WebhookVerificationError` when the signature
 * does not match the raw body, or the timestamp is more than five minutes from now (a replay). Pass the body exactly as
 * received (a string or the bytes), never re-serialised JSON. `secret` is the endpoint's `whsec_…` signing secret;
 * during a rotation's grace period try the new secret, then the old one. Dedupe on `webhook-id`.
 */
export function verifyWebhook(secret: string, rawBody: string | Uint8Array, headers: WebhookHeaders): WebhookEvent {
  return new Webhook(secret).verify(rawBody, plainHeaders(headers)) as WebhookEvent;
}

function plainHeaders(headers: WebhookHeaders): Record<string, string> {
  const plain: Record<string, string> = {};
  if (typeof Headers !== 'undefined' && headers instanceof Headers) {
    headers.forEach((value, name) => {
      plain[name.toLowerCase()] = value;
    });
    return plain;
  }
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    plain[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return plain;
}
