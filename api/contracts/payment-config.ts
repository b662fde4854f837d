import type { OperationSpec } from '../openapi/spec';

/** The contract of the payment-config operations (api/openapi/spec.ts). */
export const OPERATIONS: OperationSpec[] = [];
