import type { OperationSpec } from '../openapi/spec';

/** The contract of the invoices operations (api/openapi/spec.ts). */
export const OPERATIONS: OperationSpec[] = [];
