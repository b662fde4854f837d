import { Schema, type Connection, type Model } from 'mongoose';
import {
  AUDIT_ACTIONS,
  AUDIT_OUTCOMES,
  AUDIT_SEVERITIES,
  type AuditAction,
  type AuditOutcome,
  type AuditSeverity,
} from '../domain/audit-actions';

export interface AuditEventRecord {
  _id: string;
  companyId: string;
  officeId?: string;
  action: AuditAction;
  outcome: AuditOutcome;
  severity: AuditSeverity;
  actor: { type: 'user' | 'service' | 'system' | 'anonymous'; id: string };
  resource: { type: string; id: string };
  reason?: string;
  route?: string;
  permission?: string;
  /** Encrypted with the company's data key; decrypted on read. */
  accessReason?: unknown;
  requestId?: string;
  jobId?: string;
  occurredAt: Date;
  recordedAt: Date;
}

const auditEventSchema = new Schema<AuditEventRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    action: { type: String, required: true, enum: AUDIT_ACTIONS },
    outcome: { type: String, required: true, enum: AUDIT_OUTCOMES },
    severity: { type: String, required: true, enum: AUDIT_SEVERITIES, default: 'info' },
    actor: {
      type: new Schema(
        {
          type: { type: String, required: true, enum: ['user', 'service', 'system', 'anonymous'] },
          id: { type: String, required: true },
        },
        { _id: false },
      ),
      required: true,
    },
    resource: {
      type: new Schema(
        { type: { type: String, required: true }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
    reason: { type: String },
    route: { type: String },
    permission: { type: String },
    accessReason: { type: Schema.Types.Mixed },
    requestId: { type: String },
    jobId: { type: String },
    occurredAt: { type: Date, required: true },
    recordedAt: { type: Date, required: true },
  },
  { versionKey: false, collection: 'audit_events' },
);
auditEventSchema.index({ companyId: 1, occurredAt: 1 }, { name: 'company_time' });

export type AuditEventModel = Model<AuditEventRecord>;

export function createAuditEventModel(connection: Connection): AuditEventModel {
  return connection.model<AuditEventRecord>('AuditEvent', auditEventSchema);
}
