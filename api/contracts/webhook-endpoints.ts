import { z } from 'zod';
import { WEBHOOK_EVENT_TYPES, WEBHOOK_EVENT_DATA } from '../../domain/webhook-catalog';
import { webhookEndpointCreateSchema, webhookEndpointUpdateSchema } from '../../domain/webhook-endpoint';
import { DELIVERY_STATUSES } from '../../models/outgoing-webhook.model';
import { companyNotFound, failure, timestamp, type OperationSpec, withExamples } from '../openapi/spec';
import { REQUEST_EXAMPLES } from './examples';
import {
  deliveriesQuery,
  endpointsQuery,
  eventsQuery,
  webhookCompanyParams,
  webhookDeliveryParams,
  webhookEndpointParams,
} from '../routes/webhook-endpoints';

const TAG = 'Outgoing webhooks';
const PERMISSION = 'webhooks:manage';

const endpointView = z.strictObject({
  id: z.string(),
  companyId: z.string(),
  officeId: z.string().optional(),
  url: z.string(),
  enabledEvents: z.array(z.enum([...WEBHOOK_EVENT_TYPES, '*'])),
  description: z.string().optional(),
  disabled: z.boolean(),
  disabledReason: z
    .enum(['disabled_by_user', 'failing'])
    .optional()
    .meta({ description: '`failing`: every delivery failed for 3 days.' }),
  previousSecretExpiresAt: timestamp
    .optional()
    .meta({ description: 'After a rotation: until then the previous secret signs too (two signatures).' }),
  createdAt: timestamp,
  updatedAt: timestamp,
});
const withSecret = endpointView.extend({
  secret: z
    .string()
    .meta({ description: 'The signing secret (`whsec_…`), shown this once: store it to verify deliveries.' }),
});
const page = <T extends z.ZodType>(item: T) =>
  z.strictObject({ items: z.array(item), nextCursor: z.string().nullable() });

const deliveryView = z.strictObject({
  id: z.string(),
  endpointId: z.string(),
  eventId: z.string().meta({ description: 'The `webhook-id` every attempt of this delivery carries.' }),
  eventType: z.enum(WEBHOOK_EVENT_TYPES),
  status: z.enum(DELIVERY_STATUSES),
  redeliveries: z.number().int(),
  attempts: z.array(
    z.strictObject({
      at: timestamp,
      statusCode: z.number().int().optional(),
      latencyMs: z.number().int(),
      errorCode: z.string().optional(),
      responseExcerpt: z.string().optional().meta({ description: 'The first 256 bytes of your answer.' }),
      nextRetryAt: timestamp.optional(),
    }),
  ),
  deliveredAt: timestamp.optional(),
  createdAt: timestamp,
});

/** A delivery's body: Standard Webhooks' `{ type, timestamp, data }`, `data` by type (see the document's webhooks). */
export const webhookPayload = z.strictObject({
  type: z.enum(WEBHOOK_EVENT_TYPES),
  timestamp,
  data: z.union([...new Set(Object.values(WEBHOOK_EVENT_DATA))] as unknown as [z.ZodType, z.ZodType, ...z.ZodType[]]),
});

const eventView = z.strictObject({
  id: z.string().meta({ description: 'The `webhook-id` its deliveries carried.' }),
  type: z.enum(WEBHOOK_EVENT_TYPES),
  officeId: z.string().optional(),
  occurredAt: timestamp,
  createdAt: timestamp,
  payload: webhookPayload,
});

const endpointNotFound = failure(
  'No such company, or no such endpoint.',
  'company_not_found',
  'webhook_endpoint_not_found',
);
const urlRefused = failure(
  'The url is refused: not http(s), http in production, credentials in it, or a private, loopback, link-local or metadata host.',
  'webhook_url_refused',
);
const concurrent = failure('The endpoint changed meanwhile; read it again and retry.', 'concurrent_change');

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'post',
    route: '/v1/companies/:companyId/webhook-endpoints',
    operationId: 'createWebhookEndpoint',
    summary: 'Register a webhook endpoint',
    description:
      'Events of the types named in `enabledEvents` (`["*"]`: all) are POSTed to `url`, signed per Standard Webhooks with the secret in the answer (shown once). With `officeId`, only that office\'s events. Audited (`webhook_endpoint.created`).',
    tag: TAG,
    permission: PERMISSION,
    params: webhookCompanyParams,
    body: withExamples(webhookEndpointCreateSchema, ...REQUEST_EXAMPLES.createWebhookEndpoint),
    responses: {
      201: {
        description: 'Registered.',
        schema: withExamples(withSecret, {
          id: 'we_01JEXAMP1E0000000000000000',
          companyId: 'co_northside',
          url: 'https://billing.example.com/hooks/hipaa-billing',
          enabledEvents: ['payment.succeeded', 'payment.failed', 'refund.succeeded'],
          disabled: false,
          secret: 'whsec_c2hvd24gb25jZSwgc3RvcmUgaXQ=',
          createdAt: '2026-03-01T15:04:05.000Z',
          updatedAt: '2026-03-01T15:04:05.000Z',
        }),
      },
      404: companyNotFound,
      422: urlRefused,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/webhook-endpoints',
    operationId: 'listWebhookEndpoints',
    summary: "The company's webhook endpoints",
    tag: TAG,
    permission: PERMISSION,
    params: webhookCompanyParams,
    query: endpointsQuery,
    responses: { 200: { description: 'Newest first.', schema: page(endpointView) }, 404: companyNotFound },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId',
    operationId: 'getWebhookEndpoint',
    summary: 'One webhook endpoint (never its secret)',
    tag: TAG,
    permission: PERMISSION,
    params: webhookEndpointParams,
    responses: { 200: { description: 'The endpoint.', schema: endpointView }, 404: endpointNotFound },
  },
  {
    method: 'patch',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId',
    operationId: 'updateWebhookEndpoint',
    summary: 'Change, disable or enable a webhook endpoint',
    description: 'Enabling clears a `failing` streak. Audited (`webhook_endpoint.updated`).',
    tag: TAG,
    permission: PERMISSION,
    params: webhookEndpointParams,
    body: withExamples(webhookEndpointUpdateSchema, ...REQUEST_EXAMPLES.updateWebhookEndpoint),
    responses: {
      200: { description: 'The endpoint now.', schema: endpointView },
      404: endpointNotFound,
      409: concurrent,
      422: urlRefused,
    },
  },
  {
    method: 'delete',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId',
    operationId: 'deleteWebhookEndpoint',
    summary: 'Delete a webhook endpoint',
    description: 'Nothing more is delivered to it. Audited (`webhook_endpoint.deleted`).',
    tag: TAG,
    permission: PERMISSION,
    params: webhookEndpointParams,
    responses: { 204: { description: 'Deleted.' }, 404: endpointNotFound, 409: concurrent },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId/rotate-secret',
    operationId: 'rotateWebhookEndpointSecret',
    summary: "Rotate an endpoint's signing secret",
    description:
      'A new secret (shown once); the previous one keeps signing for 24 hours, so deliveries carry two signatures meanwhile. Audited (`webhook_endpoint.secret_rotated`).',
    tag: TAG,
    permission: PERMISSION,
    params: webhookEndpointParams,
    responses: {
      200: { description: 'The endpoint with its new secret.', schema: withSecret },
      404: endpointNotFound,
      409: concurrent,
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId/deliveries',
    operationId: 'listWebhookDeliveries',
    summary: "An endpoint's deliveries with their attempts",
    tag: TAG,
    permission: PERMISSION,
    params: webhookEndpointParams,
    query: deliveriesQuery,
    responses: { 200: { description: 'Newest first.', schema: page(deliveryView) }, 404: endpointNotFound },
  },
  {
    method: 'post',
    route: '/v1/companies/:companyId/webhook-endpoints/:endpointId/deliveries/:deliveryId/redeliver',
    operationId: 'redeliverWebhook',
    summary: 'Deliver an event to the endpoint again',
    description:
      'A new series of attempts with the same `webhook-id` (dedupe on it). Audited (`webhook_delivery.redelivered`).',
    tag: TAG,
    permission: PERMISSION,
    params: webhookDeliveryParams,
    responses: {
      202: { description: 'Queued.', schema: deliveryView },
      404: failure(
        'No such company, endpoint or delivery.',
        'company_not_found',
        'webhook_endpoint_not_found',
        'webhook_delivery_not_found',
      ),
      409: failure('The endpoint is disabled.', 'webhook_endpoint_disabled'),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/events',
    operationId: 'listEvents',
    summary: "The company's events of the last 30 days (to catch up after downtime)",
    description:
      'Oldest first after `after` (the last event id you have). The same events, ids and payloads as the deliveries; kept 30 days. Stored only while the company has at least one webhook endpoint.',
    tag: TAG,
    permission: PERMISSION,
    params: webhookCompanyParams,
    query: eventsQuery,
    responses: { 200: { description: 'A page of events.', schema: page(eventView) }, 404: companyNotFound },
  },
];
