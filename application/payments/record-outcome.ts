import type { AuditEventInput } from '../../domain/audit-event';
import { paymentOutcomeEvent } from '../../domain/payment-audit';
import type { PaymentStatus } from '../../domain/payment-status';
import type { Models } from '../../models';
import { driverCollection, stamped } from '../../models/connection';
import type { FieldEncryption } from '../../models/encryption';
import type { PaymentOutcome, SettledOutcome } from '../../domain/payment-outcome';
import type { PaymentRecord } from '../../models/payment.model';

export interface RecordOutcomeDeps {
  models: Pick<Models, 'Payment'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /** Told of every recorded outcome (a subscription's period payment then renews its subscription). */
  onOutcome?: (payment: PaymentRecord) => Promise<void>;
}

/** Who recorded it, for the audit event. */
export interface OutcomeSource {
  actor: AuditEventInput['actor'];
  jobId?: string;
}

/**
 * Records an outcome on a payment that is still in `from`: one conditional single-document update (so of two
 * writers racing from the same state exactly one wins on MongoDB; on FerretDB, which checks the filter when it reads,
 * both may apply and the later stays: the racers are the charge worker and a webhook reporting the same intent's
 * outcome, and what follows is idempotent, the outcome's event under a fixed id, its renewal and invoice made once),
 * then the outcome's audit event. Returns the updated payment, or null when the payment had already left `from`.
 * A 3-D Secure client secret is stored encrypted; a final outcome clears what no longer applies, and any outcome
 * clears the reason a payment needed attention (but `needs_attention` itself, which records it).
 */
export async function recordPaymentOutcome(
  deps: RecordOutcomeDeps,
  payment: Pick<PaymentRecord, '_id' | 'companyId'>,
  from: PaymentStatus,
  outcome: PaymentOutcome | SettledOutcome,
  source: OutcomeSource,
): Promise<PaymentRecord | null> {
  const set: Record<string, unknown> = { status: outcome.status };
  const unset = outcome.status === 'needs_attention' ? ['lastError'] : ['lastError', 'attention'];
  if (outcome.status === 'needs_attention') {
    set.attention = { ...outcome.attention, since: new Date() };
  } else if (outcome.status === 'succeeded') {
    set.completedAt = new Date();
    unset.push('failure', 'action');
  } else if (outcome.status === 'failed') {
    set.completedAt = new Date();
    set.failure = outcome.failure;
    unset.push('action');
  } else if (outcome.status === 'requires_action' && outcome.clientSecret) {
    set.action = {
      clientSecret: await deps.encryption.encrypt(payment.companyId, outcome.clientSecret),
      nextActionType: outcome.nextActionType,
    };
  }
  // A driver command on the model's (decrypting) client: no mongoose query to build and cast on every outcome.
  const applied = await driverCollection<PaymentRecord>(deps.models.Payment).findOneAndUpdate(
    { _id: payment._id, status: from },
    stamped({ $set: set, $unset: Object.fromEntries(unset.map((field) => [field, 1 as const])) }),
    { returnDocument: 'after', ignoreUndefined: true },
  );
  if (applied) {
    await auditPaymentOutcome(deps, applied, source);
    await deps.onOutcome?.(applied);
  }
  return applied;
}

/**
 * Audits a settled payment's outcome (nothing while it is in flight). The event id is deterministic, so the charge
 * worker, a webhook and a retry of either may all send it.
 */
export async function auditPaymentOutcome(
  deps: Pick<RecordOutcomeDeps, 'enqueueAudit'>,
  payment: PaymentRecord,
  source: OutcomeSource,
): Promise<void> {
  const event = paymentOutcomeEvent(payment, source.actor, source.jobId);
  if (event) await deps.enqueueAudit(event);
}
