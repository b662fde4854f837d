import type { FastifyRequest } from 'fastify';
import type { FieldEncryption } from '../models/encryption';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../platform/deadline';
import type { Queues } from '../queues';
import { type AuditEventInput } from '../domain/audit-event';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { sealRequestContext } from './audit-context';

/**
 * Queues the job for a recorded intent, with its audit event when the caller gives one (a refund's; a payment's
 * charge job is all its ingress queues: the charge worker sends `payment.requested` from the stored payment). Both
 * are idempotent (job ids from business keys), so a retry or the outbox sweep may repeat them. Called only once the
 * intent is recorded, so it never fails the request: a 5xx would tell the client "not done", and a client that then
 * retries with a new Idempotency-Key would pay (or refund) twice. When Redis does not take them in time (BullMQ waits
 * for a connection that may never come), the failure is logged and the request is still accepted: the outbox sweep
 * queues the recorded intent, and its worker emits the same `*.requested` audit event (same event id).
 */
export async function enqueueRecordedIntent(
  request: FastifyRequest,
  deps: { encryption: Pick<FieldEncryption, 'encrypt'>; queues: Pick<Queues, 'audit'> },
  intent: {
    what: 'payment' | 'refund';
    id: string;
    audit?: Omit<AuditEventInput, 'sealed'> & { companyId: string };
    enqueueJob: () => Promise<void>;
  },
): Promise<void> {
  try {
    const { audit } = intent;
    const sealed = audit ? await sealRequestContext(request, audit.companyId, deps.encryption) : undefined;
    await withDeadline<unknown>(
      audit
        ? Promise.all([intent.enqueueJob(), enqueueAuditEvent(deps.queues.audit, { ...audit, sealed })])
        : intent.enqueueJob(),
      ENQUEUE_DEADLINE_MS,
      'enqueue',
    );
  } catch (error) {
    request.log.error(
      { err: error, [`${intent.what}Id`]: intent.id },
      `${intent.what} recorded but not queued; the outbox sweep will queue it`,
    );
  }
}
