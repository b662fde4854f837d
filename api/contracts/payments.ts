import type { OperationSpec } from '../openapi/spec';

/** The contract of the payments operations (api/openapi/spec.ts). */
export const OPERATIONS: OperationSpec[] = [];
