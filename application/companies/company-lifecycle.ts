import { createHash } from 'node:crypto';
import { ZodError } from 'zod';
import { transitionEventId } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import { maskSecret } from '../../domain/payment-config';
import { createCompany, newCompanyId, shredCompany, type NewCompany } from '../../models/companies';
import type { Database } from '../../models';
import { clearPendingAudit } from '../../models/payment-config';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';

export interface CompanyLifecycleDeps {
  db: Pick<Database, 'encryption' | 'models'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
}

/** What was stored is kept with its audit event, which Redis did not take in time: the outbox sweep sends it. */
export class AuditNotQueuedError extends Error {
  constructor(
    readonly companyId: string,
    action: AuditEventInput['action'],
    options: { cause: unknown },
  ) {
    super(
      `${companyId} is stored, but its ${action} audit event could not be queued ` +
        `(${options.cause instanceof Error ? options.cause.message : String(options.cause)}); ` +
        'it is kept with the company, and the outbox sweep records it once Redis is back',
      options,
    );
    this.name = 'AuditNotQueuedError';
  }
}

/**
 * Creates a company (or completes one with this id) and audits `company.created` with what was set, secrets masked.
 * The event is stored with the secret key and attestation it records, in the same write (models/pending-audit.ts),
 * then queued; if Redis does not take it in time this throws AuditNotQueuedError and the outbox sweep queues it. The
 * event id derives from the company and what was set (the key and attestation themselves, not only their masked
 * form): running the same setup again records nothing new, setting something else records it.
 */
export async function createCompanyAudited(
  deps: CompanyLifecycleDeps,
  input: NewCompany,
  actor: AuditEventInput['actor'],
): Promise<string> {
  const id = input.id ?? newCompanyId();
  const changes: NonNullable<AuditEventInput['changes']> = [
    { field: 'name', before: null, after: '[set]' },
    ...(input.stripeSecretKey
      ? [{ field: 'secretKey', before: null, after: maskSecret(input.stripeSecretKey) ?? null }]
      : []),
    ...(input.webhookSigningSecrets
      ? [{ field: 'webhookSigningSecrets', before: null, after: `[${input.webhookSigningSecrets.length} set]` }]
      : []),
    ...(input.mode ? [{ field: 'mode', before: null, after: input.mode }] : []),
    ...(input.compliance ? [{ field: 'compliance.status', before: null, after: input.compliance.status }] : []),
  ];
  const fingerprint = setupFingerprint(input, changes);
  const event: AuditEventInput = {
    eventId: transitionEventId('company.created', `${id}-${fingerprint}`),
    companyId: id,
    action: 'company.created',
    outcome: 'success',
    actor,
    resource: { type: 'company', id },
    changes,
    occurredAt: new Date().toISOString(),
  };
  const pending = { key: `created-${fingerprint}`, events: [event] };
  await createCompany(deps.db, { ...input, id }, pending);
  try {
    await withDeadline(deps.enqueueAudit(event), ENQUEUE_DEADLINE_MS, 'audit enqueue');
  } catch (error) {
    // An event that does not fit the audit schema is a bug, not an outage.
    if (error instanceof ZodError) throw error;
    throw new AuditNotQueuedError(id, 'company.created', { cause: error });
  }
  await clearPendingAudit(deps.db, { companyId: id }, pending.key);
  return id;
}

/**
 * Names what a setup stores. A new key whose masked form is the same as the old one's is another setup, so the key
 * goes in as its own digest (the fingerprint, 64 bits of a hash over it, says nothing usable about it); the
 * attestation without its time, so the same setup run again is the same.
 */
function setupFingerprint(input: NewCompany, changes: NonNullable<AuditEventInput['changes']>): string {
  const digest = (value: string) => createHash('sha256').update(value).digest('hex');
  const stored = {
    changes,
    secretKey: input.stripeSecretKey ? digest(input.stripeSecretKey) : null,
    webhookSigningSecrets: input.webhookSigningSecrets?.map(digest) ?? null,
    attestation: input.compliance ? Object.entries(input.compliance).filter(([field]) => field !== 'attestedAt') : null,
  };
  return digest(JSON.stringify(stored)).slice(0, 16);
}

/**
 * Crypto-shreds a company (its data key destroyed) and audits `company.shredded` at high severity, once: the event id
 * derives from the company, so running it again after a failed enqueue records the one event.
 * `not_found` when there is no such company; nothing changes then.
 */
export async function shredCompanyAudited(
  deps: CompanyLifecycleDeps,
  companyId: string,
  actor: AuditEventInput['actor'],
): Promise<{ outcome: 'not_found' } | { outcome: 'shredded'; keyWasPresent: boolean }> {
  if (!(await deps.db.models.Company.exists({ _id: companyId }))) return { outcome: 'not_found' };
  const keyWasPresent = await shredCompany(deps.db, companyId);
  await deps.enqueueAudit({
    eventId: transitionEventId('company.shredded', companyId),
    companyId,
    action: 'company.shredded',
    outcome: 'success',
    severity: 'high',
    actor,
    resource: { type: 'company', id: companyId },
    changes: [{ field: 'dataKey', before: keyWasPresent ? 'present' : 'absent', after: 'destroyed' }],
    occurredAt: new Date().toISOString(),
  });
  return { outcome: 'shredded', keyWasPresent };
}
