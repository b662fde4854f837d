import type { OperationSpec } from '../openapi/spec';

/** The contract of the subscriptions operations (api/openapi/spec.ts). */
export const OPERATIONS: OperationSpec[] = [];
