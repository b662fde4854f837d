import { createHash } from 'node:crypto';
import { transitionEventId } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import { maskSecret } from '../../domain/payment-config';
import { createCompany, shredCompany, type NewCompany } from '../../models/companies';
import type { Database } from '../../models';

export interface CompanyLifecycleDeps {
  db: Pick<Database, 'encryption' | 'models'>;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
}

/**
 * Creates a company (or completes one with this id) and audits `company.created` with what was set, secrets masked.
 * The event id derives from the company and what was set: running the same setup again records nothing new, setting
 * something else records it. Should the audit enqueue fail, the error says so and running it again records it.
 */
export async function createCompanyAudited(
  deps: CompanyLifecycleDeps,
  input: NewCompany,
  actor: AuditEventInput['actor'],
): Promise<string> {
  const id = await createCompany(deps.db, input);
  const changes: NonNullable<AuditEventInput['changes']> = [
    { field: 'name', before: null, after: '[set]' },
    ...(input.stripeSecretKey
      ? [{ field: 'secretKey', before: null, after: maskSecret(input.stripeSecretKey) ?? null }]
      : []),
    ...(input.mode ? [{ field: 'mode', before: null, after: input.mode }] : []),
    ...(input.compliance ? [{ field: 'compliance.status', before: null, after: input.compliance.status }] : []),
  ];
  const fingerprint = createHash('sha256').update(JSON.stringify(changes)).digest('hex').slice(0, 16);
  await deps.enqueueAudit({
    eventId: transitionEventId('company.created', `${id}-${fingerprint}`),
    companyId: id,
    action: 'company.created',
    outcome: 'success',
    actor,
    resource: { type: 'company', id },
    changes,
    occurredAt: new Date().toISOString(),
  });
  return id;
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
