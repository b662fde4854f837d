import { z } from 'zod';
import { replayBody, replayParams } from '../routes/webhook-events';
import { failure, type OperationSpec, withExamples } from '../openapi/spec';
import { REQUEST_EXAMPLES } from './examples';

const probe = z.enum(['ok', 'unavailable']);
const readiness = z.strictObject({ status: z.enum(['ready', 'unavailable']), redis: probe, mongodb: probe });

const STRIPE_REJECTIONS = [
  'config_unknown',
  'webhook_secret_missing',
  'company_shredded',
  'signature_missing',
  'signature_malformed',
  'signature_invalid',
  'timestamp_outside_tolerance',
  'payload_invalid',
];

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'get',
    route: '/healthz',
    operationId: 'health',
    summary: 'The process is up',
    tag: 'Operations',
    security: 'none',
    responses: { 200: { description: 'Up.', schema: z.strictObject({ status: z.literal('ok') }) } },
  },
  {
    method: 'get',
    route: '/readyz',
    operationId: 'readiness',
    summary: 'The process can do work: Redis and MongoDB answer',
    description: 'One answer serves every caller for a second.',
    tag: 'Operations',
    security: 'none',
    responses: {
      200: { description: 'Ready.', schema: readiness },
      503: { description: 'A store does not answer; it says which.', schema: readiness },
    },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/webhook-events/:eventId/replay',
    operationId: 'replayWebhookEvent',
    summary: 'Process a stored Stripe event again',
    description:
      'For an event that was ignored (e.g. `payment_not_found`, having arrived before its payment existed). The worker does the rest; the replay is audited.',
    tag: 'Stripe webhooks',
    permission: 'webhook_events:replay',
    params: replayParams,
    body: withExamples(replayBody, ...REQUEST_EXAMPLES.replayWebhookEvent),
    responses: {
      202: {
        description: 'Queued for processing again.',
        schema: z.strictObject({
          id: z.string(),
          status: z.literal('received'),
          replays: z
            .number()
            .int()
            .nonnegative()
            .meta({ description: 'How many times it was replayed before this one (0: it was only given a job).' }),
        }),
      },
      404: failure('No such event in this company.', 'webhook_event_not_found', 'company_not_found'),
      410: failure("The company's data was crypto-shredded.", 'data_shredded'),
      503: failure('Ready for replay but not queued; the outbox sweep queues it.', 'queue_unavailable'),
    },
  },
  {
    method: 'post',
    route: '/v1/webhooks/stripe/:configId',
    operationId: 'receiveStripeEvent',
    summary: "Stripe's webhook deliveries, one endpoint per payment configuration",
    description:
      "`configId` is the company id, or `<companyId>.<officeId>` for an office's own gateway account. The raw body is verified against the configuration's signing secrets (`Stripe-Signature`), stored once per event id, and processed by the stripe-events worker.",
    tag: 'Stripe webhooks',
    security: 'stripe_signature',
    params: z.strictObject({ configId: z.string().regex(/^[A-Za-z0-9_-]{1,64}(?:\.[A-Za-z0-9_-]{1,64})?$/) }),
    responses: {
      200: { description: 'Stored (or already stored).', schema: z.strictObject({ received: z.literal(true) }) },
      400: failure('Not verified, or not a Stripe event; audited within a bound.', ...STRIPE_REJECTIONS),
      429: failure('Too many deliveries that failed to verify from this address.', 'auth_rate_limited'),
      503: failure('Stored but not queued; retry (Stripe does).', 'queue_unavailable'),
    },
  },
];
