import { isDeepStrictEqual } from 'node:util';
import type { InvariantResult } from './invariants';
import type { ChaosSystem } from './system';
import type { Workload } from './workload';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Every page of a cursor-paged list of the api (`items`, `nextCursor`). */
async function allPages(workload: Workload, path: string): Promise<Json[] | undefined> {
  const items: Json[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await workload.call(undefined, 'GET', `${path}?limit=100${after ? `&after=${after}` : ''}`);
    if (page?.status !== 200) return undefined;
    items.push(...(page.body.items as Json[]));
    after = (page.body.nextCursor as string | null | undefined) ?? undefined;
    if (!after) return items;
  }
}

function result(name: string, checked: string, violations: string[]): InvariantResult {
  return { name, ok: violations.length === 0, checked, violations: violations.slice(0, 20) };
}

/**
 * Outgoing webhooks, from the integrator's side (the receiver, chaos/webhook-receiver.ts) against what the system
 * says it sent (the events API and the endpoint's delivery records).
 */
export async function checkWebhookInvariants(system: ChaosSystem, workload: Workload): Promise<InvariantResult[]> {
  const { receiver } = system;
  const events = await allPages(workload, '/events');
  const deliveries = await allPages(workload, `/webhook-endpoints/${system.webhookEndpointId}/deliveries`);
  const deliveryOf = new Map((deliveries ?? []).map((d) => [d.eventId as string, d]));
  const results: InvariantResult[] = [];

  // Every event the system lists reached the receiver, verified (standardwebhooks, the endpoint's secret) and with
  // the listed payload, and the system's record of its delivery says delivered; nothing arrived that it does not list.
  {
    const v: string[] = [];
    if (!events) v.push('GET /events did not answer 200');
    if (!deliveries) v.push('GET /webhook-endpoints/…/deliveries did not answer 200');
    const listed = new Set((events ?? []).map((e) => e.id as string));
    for (const event of events ?? []) {
      const received = receiver.events.get(event.id as string);
      if (!received || received.accepted === 0) {
        v.push(`event ${event.id} (${event.type}) never accepted by the receiver`);
      } else if (!isDeepStrictEqual(received.payload, event.payload)) {
        v.push(`event ${event.id} (${event.type}): the receiver verified a payload other than the listed one`);
      }
      const delivery = deliveryOf.get(event.id as string);
      if (delivery?.status !== 'delivered') {
        v.push(`event ${event.id} (${event.type}): delivery ${delivery?.id ?? '(none)'} ${delivery?.status ?? ''}`);
      }
    }
    for (const [id, received] of receiver.events) {
      if (received.accepted > 0 && !listed.has(id))
        v.push(`the receiver accepted ${id}, which GET /events does not list`);
    }
    const badSignatures = receiver.count('bad_signature');
    if (badSignatures > 0) v.push(`${badSignatures} deliveries failed standardwebhooks verification`);
    results.push(
      result(
        'every listed outgoing webhook event reached the receiver, verified',
        `${events?.length ?? 0} events, ${receiver.arrivals.length} arrivals (${receiver.count('error_500')} answered 500, ` +
          `${receiver.count('hung')} held past the timeout, ${receiver.count('duplicate')} duplicates)`,
        v,
      ),
    );
  }

  // Each webhook-id accepted (2xx) at most once — except a repeat that at-least-once delivery allows: one whose
  // earlier acceptance the system could not record (its worker killed, the database down, the answer past the
  // timeout). The system's delivery record counts the 2xx answers it stored; a repeat is a violation when the system
  // had recorded every acceptance, i.e. it sent again an event it knew was delivered. The system never records a 2xx
  // the receiver did not give.
  {
    const v: string[] = [];
    let repeats = 0;
    for (const [id, received] of receiver.events) {
      const delivery = deliveryOf.get(id);
      const recorded = ((delivery?.attempts ?? []) as Json[]).filter(
        (a) => typeof a.statusCode === 'number' && a.statusCode >= 200 && a.statusCode < 300,
      ).length;
      if (recorded > received.accepted) {
        v.push(
          `${id}: ${recorded} successful attempts recorded, the receiver answered 2xx ${received.accepted} time(s)`,
        );
      }
      if (received.accepted > 1) {
        repeats += received.accepted - 1;
        if (recorded >= received.accepted) {
          v.push(`${id}: accepted ${received.accepted} times, each recorded delivered: sent again after delivery`);
        }
      }
    }
    results.push(
      result(
        'each webhook-id accepted at most once, a repeat only where delivery is at least once',
        `${receiver.events.size} webhook-ids; ${repeats} repeat(s) of an accepted id`,
        v,
      ),
    );
  }
  return results;
}
