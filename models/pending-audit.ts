import type { AuditEventInput } from '../domain/audit-event';

/**
 * Audit events stored on the document whose change they record, in the same single-document write as the change,
 * until they are queued: a crash or a Redis outage between the write and the enqueue loses nothing, because the
 * outbox sweep queues what is still pending. Their ids are fixed when they are stored, so whoever sends them (the
 * writer, the sweep, both) records each once. Kept under `pendingAudit.<key>`, one key per change.
 */
export interface PendingAudit {
  key: string;
  events: AuditEventInput[];
}

/** The document field; `$ne: {}` finds documents with something pending. */
export const PENDING_AUDIT_FIELD = 'pendingAudit';

const PENDING_KEY = /^[A-Za-z0-9_-]{1,80}$/;

/** `pendingAudit.<key>`: the key becomes part of a field path, so it may hold no dot or `$`. */
export function pendingAuditPath(key: string): string {
  if (!PENDING_KEY.test(key)) throw new Error(`"${key}" cannot name a pending audit entry`);
  return `${PENDING_AUDIT_FIELD}.${key}`;
}

/** The `$set` entries that store `pending` with the change it records (none without one). */
export function pendingAuditSet(pending: PendingAudit | undefined): Record<string, AuditEventInput[]> {
  return pending ? { [pendingAuditPath(pending.key)]: pending.events } : {};
}
