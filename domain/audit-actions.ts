/** The catalog of audit action names. Names are never renamed once shipped. */
export const AUDIT_ACTIONS = [
  'payment.requested',
  'payment.succeeded',
  'payment.failed',
  'payment.requires_action',
  'payment.needs_attention',
  'payment.disputed',
  'payment.dispute_closed',
  'payment_method.saved',
  'payment_method.setup_started',
  'payment.refunded_amount_reported',
  'refund.requested',
  'refund.succeeded',
  'refund.failed',
  'refund.canceled',
  'refund.needs_attention',
  'plan.created',
  'subscription.created',
  'subscription.updated',
  'subscription.status_changed',
  'subscription.attempt_started',
  'subscription.attempt_failed',
  'subscription.period_paid',
  'subscription.final_settled',
  'subscription.late_charge_refunded',
  'billing_settings.updated',
  'test_clock.created',
  'test_clock.advanced',
  'auth.failed',
  'access.denied',
  'access.emergency',
  'payment_config.read',
  'payment_config.updated',
  'payment_config.attested',
  'company.created',
  'company.shredded',
  'keys.rotation_started',
  'keys.rotated',
  'audit.read',
  'audit.exported',
  'audit.verified',
  'audit.purged',
  'webhook.received',
  'webhook.rejected',
  'webhook.applied',
  'webhook.ignored',
  'webhook.replayed',
  'invoice.finalized',
  'invoice.rendered',
  'invoice.downloaded',
  'invoice.integrity_failed',
  'invoice.paid',
  'invoice.voided',
  'credit_note.finalized',
  'credit_note.rendered',
  'credit_note.downloaded',
  'credit_note.integrity_failed',
  'credit_note.voided',
  'invoice_settings.updated',
  'payer.updated',
  'dashboard.signed_in',
  'dashboard.signed_out',
  'dashboard.action',
  'dashboard.denied',
  'dashboard.sessions_revoked',
  'webhook_endpoint.created',
  'webhook_endpoint.updated',
  'webhook_endpoint.deleted',
  'webhook_endpoint.secret_rotated',
  'webhook_endpoint.disabled',
  'webhook_delivery.redelivered',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export const AUDIT_OUTCOMES = ['success', 'failure', 'denied'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export const AUDIT_SEVERITIES = ['info', 'high'] as const;
export type AuditSeverity = (typeof AUDIT_SEVERITIES)[number];

/** Events that belong to no company (a request whose company cannot be trusted) go to this trail. */
export const PLATFORM_AUDIT_SCOPE = 'platform';

/**
 * Events that record a state transition get an id derived from the action and
 * the resource, so whoever emits one (ingress, worker, sweep, a retry) emits
 * the same event and it is stored once.
 */
export function transitionEventId(action: AuditAction, resourceId: string): string {
  return `evt-${action.replace('.', '-')}-${resourceId}`;
}
