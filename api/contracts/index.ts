import type { OperationSpec } from '../openapi/spec';
import { OPERATIONS as AUDIT } from './audit';
import { OPERATIONS as INVOICES } from './invoices';
import { OPERATIONS as PAYMENT_CONFIG } from './payment-config';
import { OPERATIONS as PAYMENTS } from './payments';
import { OPERATIONS as PLATFORM } from './platform';
import { OPERATIONS as SUBSCRIPTIONS } from './subscriptions';
import { OPERATIONS as WEBHOOK_ENDPOINTS } from './webhook-endpoints';

/** Every api operation's contract: the OpenAPI document is generated from these (api/openapi/document.ts). */
export const OPERATIONS: readonly OperationSpec[] = [
  ...PAYMENTS,
  ...SUBSCRIPTIONS,
  ...INVOICES,
  ...PAYMENT_CONFIG,
  ...AUDIT,
  ...PLATFORM,
  ...WEBHOOK_ENDPOINTS,
];
