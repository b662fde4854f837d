/** The catalog of audit action names. Names are never renamed once shipped. */
export const AUDIT_ACTIONS = [
  'payment.requested',
  'payment.succeeded',
  'payment.failed',
  'payment.requires_action',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

/**
 * Events that record a state transition get an id derived from the action and
 * the resource, so whoever emits one (ingress, worker, sweep, a retry) emits
 * the same event and it is stored once.
 */
export function transitionEventId(action: AuditAction, resourceId: string): string {
  return `evt-${action.replace('.', '-')}-${resourceId}`;
}
