import { z } from 'zod';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../../domain/audit-actions';
import { auditParams, auditQuery } from '../routes/audit-events';
import { failure, type OperationSpec, timestamp } from '../openapi/spec';

const hash = z.string().regex(/^[0-9a-f]{64}$/);
const chainPoint = z.strictObject({ sequence: z.number().int().nonnegative(), hash });

/** An audit event as an auditor reads it: everything recorded, sealed fields decrypted, and its chain links. */
export const auditEventView = z.strictObject({
  id: z.string(),
  sequence: z.number().int().positive(),
  occurredAt: timestamp,
  recordedAt: timestamp,
  action: z.enum(AUDIT_ACTIONS),
  outcome: z.enum(AUDIT_OUTCOMES),
  severity: z.string(),
  actor: z.strictObject({
    type: z.enum(['user', 'service', 'system', 'anonymous']),
    id: z.string(),
    roles: z.array(z.string()).optional(),
    accessReason: z.string().optional(),
  }),
  resource: z.strictObject({ type: z.string(), id: z.string() }),
  officeId: z.string().optional(),
  reason: z.string().optional(),
  route: z.string().optional(),
  permission: z.string().optional(),
  request: z
    .strictObject({
      requestId: z.string().optional(),
      sourceIp: z.string().optional(),
      userAgent: z.string().optional(),
    })
    .optional(),
  changes: z
    .array(z.strictObject({ field: z.string(), before: z.string().nullable(), after: z.string().nullable() }))
    .optional(),
  jobId: z.string().optional(),
  prevHash: hash,
  hash,
});

const chainReport = z.strictObject({
  companyId: z.string(),
  ok: z.boolean(),
  checked: z.number().int().nonnegative(),
  anchorsChecked: z.number().int().nonnegative(),
  start: chainPoint.extend({ from: z.enum(['genesis', 'checkpoint']) }),
  head: chainPoint,
  broken: z
    .strictObject({
      sequence: z.number().int(),
      problem: z.string(),
      expected: z.string(),
      found: z.string(),
    })
    .optional(),
});

const READ = 'audit:read';

export const OPERATIONS: OperationSpec[] = [
  {
    method: 'get',
    route: '/v1/companies/:companyId/audit-events',
    operationId: 'listAuditEvents',
    summary: "Read the company's audit trail",
    description:
      'Events in chain order, filtered; reading is itself audited (`audit.read`) before anything is shown. `format=ndjson` (or `Accept: application/x-ndjson`) streams every matching event, one JSON object per line (`audit.exported`).',
    tag: 'Audit',
    permission: READ,
    params: auditParams,
    query: auditQuery,
    responses: {
      200: {
        description: 'A page of events; `nextCursor` is the sequence to pass as `after` (null on the last page).',
        schema: z.strictObject({ items: z.array(auditEventView), nextCursor: z.number().int().nullable() }),
        alsoAs: ['application/x-ndjson'],
      },
      404: failure('No such company.', 'company_not_found'),
    },
  },
  {
    method: 'get',
    route: '/v1/companies/:companyId/audit-events/verify',
    operationId: 'verifyAuditTrail',
    summary: "Verify the audit trail's hash chain and signed anchors",
    tag: 'Audit',
    permission: READ,
    params: auditParams,
    responses: { 200: { description: 'What was checked, and the first broken link if any.', schema: chainReport } },
  },
];
