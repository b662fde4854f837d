import { Schema, type Connection, type Model } from 'mongoose';
import {
  AUDIT_ACTIONS,
  AUDIT_OUTCOMES,
  AUDIT_SEVERITIES,
  type AuditAction,
  type AuditOutcome,
  type AuditSeverity,
} from '../domain/audit-actions';

export const AUDIT_EVENTS_COLLECTION = 'audit_events';

/**
 * One event of a company's hash-chained audit trail, as read back (encrypted
 * fields decrypted). Written only by the audit trail's append (see audit-trail.ts).
 */
export interface AuditEventRecord {
  _id: string;
  companyId: string;
  officeId?: string;
  sequence: number;
  occurredAt: Date;
  recordedAt: Date;
  action: AuditAction;
  outcome: AuditOutcome;
  severity: AuditSeverity;
  actor: { type: 'user' | 'service' | 'system' | 'anonymous'; id: string; roles?: string[]; accessReason?: unknown };
  resource: { type: string; id: string };
  reason?: string;
  route?: string;
  permission?: string;
  request?: { requestId?: string; sourceIp?: unknown; userAgent?: unknown };
  changes?: Array<{ field: string; before: string | null; after: string | null }>;
  jobId?: string;
  prevHash: string;
  hash: string;
}

const auditEventSchema = new Schema<AuditEventRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    sequence: { type: Number, required: true },
    occurredAt: { type: Date, required: true },
    recordedAt: { type: Date, required: true },
    action: { type: String, required: true, enum: AUDIT_ACTIONS },
    outcome: { type: String, required: true, enum: AUDIT_OUTCOMES },
    severity: { type: String, required: true, enum: AUDIT_SEVERITIES },
    actor: { type: Schema.Types.Mixed, required: true },
    resource: { type: Schema.Types.Mixed, required: true },
    reason: { type: String },
    route: { type: String },
    permission: { type: String },
    request: { type: Schema.Types.Mixed },
    changes: { type: Schema.Types.Mixed },
    jobId: { type: String },
    prevHash: { type: String, required: true },
    hash: { type: String, required: true },
  },
  { versionKey: false, collection: AUDIT_EVENTS_COLLECTION },
);
// The unique company_sequence index belongs to the AuditTrail (ensureIndexes): the chain's integrity rests on it.
auditEventSchema.index({ companyId: 1, occurredAt: 1 }, { name: 'company_time' });

// Append-only: through this model an event can be read, never changed or removed.
const MUTATIONS = [
  'updateOne',
  'updateMany',
  'findOneAndUpdate',
  'findOneAndReplace',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'findOneAndDelete',
] as const;
for (const operation of MUTATIONS) {
  auditEventSchema.pre(operation, function refuse() {
    throw new Error(`audit events are append-only: ${operation} is not allowed`);
  });
}
// Appended by the audit trail only (a plain driver client), never through this model. One hook per call:
// save is document middleware, insertMany and bulkWrite are model middleware (mongoose types them apart).
function refuseAppend(): never {
  throw new Error('audit events are appended by the audit trail only');
}
auditEventSchema.pre('save', refuseAppend);
auditEventSchema.pre('insertMany', refuseAppend);
auditEventSchema.pre('bulkWrite', refuseAppend);

export type AuditEventModel = Model<AuditEventRecord>;

export function createAuditEventModel(connection: Connection): AuditEventModel {
  return connection.model<AuditEventRecord>('AuditEvent', auditEventSchema);
}
