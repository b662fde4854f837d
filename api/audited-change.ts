import type { FastifyRequest } from 'fastify';
import { ulid } from '../platform/ids';
import { transitionEventId } from '../domain/audit-actions';
import type { AuditEventInput } from '../domain/audit-event';
import { pendingAuditPath, pendingAuditSet } from '../models/pending-audit';
import type { AccessGuard, CallerEvent } from './access-guard';
import { ApiError } from './errors';

/** A model whose documents can hold pending audit events (a `pendingAudit` field in its schema). */
interface PendingAuditHolder {
  updateOne(filter: { _id: string }, update: { $unset: Record<string, 1> }): PromiseLike<unknown>;
}

/**
 * A settings change that fails closed on its audit: the event is prepared first (with the request's sealed context,
 * under an id fixed by the change), `write` stores it in the same single-document write as the change
 * (`pendingAudit.<key>`, models/pending-audit.ts), then it is queued. When Redis does not take it, the change stands
 * with its event and the outbox sweep records it (the caller gets 503 `audit_unavailable` saying so); once queued it
 * is no longer pending. Nothing is ever changed without its event stored beside it.
 */
export async function writeAudited<T>(
  request: FastifyRequest,
  guard: Pick<AccessGuard, 'prepare' | 'send'>,
  change: {
    holder: PendingAuditHolder;
    id: string;
    event: CallerEvent;
    write: (pendingAudit: Record<string, AuditEventInput[]>) => Promise<T>;
  },
): Promise<T> {
  const key = `chg_${ulid()}`;
  const event = await guard.prepare(request, change.event, transitionEventId(change.event.action, key));
  const result = await change.write(pendingAuditSet({ key, events: [event] }));
  if (!(await guard.send(request, [event]))) {
    throw new ApiError(
      503,
      'audit_unavailable',
      'the change is saved, but its audit event could not be queued; it is kept with it and the outbox sweep records it once the queue is back (no retry is needed)',
    );
  }
  try {
    await change.holder.updateOne({ _id: change.id }, { $unset: { [pendingAuditPath(key)]: 1 } });
  } catch (error) {
    // Queued already: should it stay marked pending, the sweep sends it again under the same id.
    request.log.warn({ err: error, key }, 'audit event queued but still marked pending');
  }
  return result;
}
