import { auditEventSchema, type AuditEvent, type AuditEventInput } from '../../domain/audit-event';
import type { AppendResult, AuditTrail } from '../../models/audit-trail';

export interface AppendAuditDeps {
  auditTrail: Pick<AuditTrail, 'appendMany'>;
  /**
   * After the append (a first one or a redelivery's duplicate), for each event in order: derives the outgoing webhook
   * event, if the action is in the catalog (application/outgoing-webhooks/emit-event.ts). Idempotent; if it throws, the
   * caller sends the events again.
   */
  onAppended?: (event: AuditEvent) => Promise<unknown>;
}

/**
 * Appends events to their companies' hash chains, in order: the consecutive events of one chain in one write. An event
 * sent again is stored once (its id is the key), so a caller that failed part-way sends them all again.
 */
export async function appendAuditEvents(deps: AppendAuditDeps, events: readonly AuditEvent[]): Promise<AppendResult[]> {
  const byCompany = new Map<string, AuditEvent[]>();
  for (const event of events) byCompany.set(event.companyId, [...(byCompany.get(event.companyId) ?? []), event]);
  const results: AppendResult[] = [];
  for (const [companyId, chain] of byCompany) results.push(...(await deps.auditTrail.appendMany(companyId, chain)));
  if (deps.onAppended) for (const event of events) await deps.onAppended(event);
  return results;
}

/**
 * The events of one outcome, from the job that collected them (a charge, a renewal): appended in the job itself, so
 * the outcome needs no audit job. If the append fails (MongoDB unreachable, a chain too contended), `queue` takes them
 * as one audit job instead, whose retries ride out a longer outage than the job's own; if that fails too, the error
 * goes to the job, which is retried and sends them again.
 */
export function appendOrQueueAuditEvents(
  deps: AppendAuditDeps & {
    queue: (events: readonly AuditEventInput[]) => Promise<void>;
    onQueued: (error: unknown) => void;
  },
): (events: readonly AuditEventInput[]) => Promise<void> {
  return async (events) => {
    if (events.length === 0) return;
    const parsed = events.map((event) => auditEventSchema.parse(event));
    try {
      await appendAuditEvents(deps, parsed);
    } catch (error) {
      deps.onQueued(error);
      await deps.queue(events);
    }
  };
}
