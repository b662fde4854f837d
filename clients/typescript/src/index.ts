export {
  createHipaaBillingClient,
  PAYMENT_PENDING_STATUSES,
  type ClientPaths,
  type ErrorBody,
  type HipaaBillingClient,
  type HipaaBillingClientOptions,
  type PageItem,
  type PaginatedPath,
  type PaginateInit,
  type Payment,
  type TokenSource,
  type WaitForOptions,
} from './client';
export { HipaaBillingError, type HipaaBillingErrorDetail } from './errors';
export { retryAfterMs, type RetryOptions } from './retry';
export {
  verifyWebhook,
  WebhookVerificationError,
  type WebhookEvent,
  type WebhookEventOf,
  type WebhookEventType,
  type WebhookHeaders,
} from './webhooks';
export type { components, operations, paths, webhooks } from './schema';
