import type { FastifyRequest } from 'fastify';
import type { FieldEncryption } from '../models/encryption';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../platform/deadline';
import type { Queues } from '../queues';
import { type AuditEventInput } from '../domain/audit-event';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { sealRequestContext } from './audit-context';
import { ApiError } from './errors';

/**
 * Queues the job for a recorded intent together with its audit event. Both are
 * idempotent (job ids from business keys), so a retry or the outbox sweep may
 * repeat them. BullMQ waits for a connection that may never come; the caller
 * gets a 503 instead, and the intent stays recorded for the sweep.
 */
export async function enqueueRecordedIntent(
  request: FastifyRequest,
  deps: { encryption: Pick<FieldEncryption, 'encrypt'>; queues: Pick<Queues, 'audit'> },
  intent: {
    what: 'payment' | 'refund';
    audit: Omit<AuditEventInput, 'sealed'> & { companyId: string };
    enqueueJob: () => Promise<void>;
  },
): Promise<void> {
  const sealed = await sealRequestContext(request, intent.audit.companyId, deps.encryption);
  try {
    await withDeadline(
      Promise.all([intent.enqueueJob(), enqueueAuditEvent(deps.queues.audit, { ...intent.audit, sealed })]),
      ENQUEUE_DEADLINE_MS,
      'enqueue',
    );
  } catch {
    throw new ApiError(
      503,
      'queue_unavailable',
      `the ${intent.what} was recorded but could not be queued; retry with the same Idempotency-Key`,
    );
  }
}
