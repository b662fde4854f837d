/**
 * Issue 23 §3, CI's short chaos run: the api (two processes) and workers (three) from dist/, a Redis of the run's own,
 * stripe-sim behind the recording proxy; ~80 s of mixed workload while a fixed schedule SIGKILLs a worker (twice) and
 * an api, restarts and pauses Redis, kills and restarts the run's own FerretDB, and makes Stripe answer 5xx and drop
 * connections after processing; the company's outgoing webhooks go to a receiver that sometimes answers 500 or hangs.
 * Then every invariant must hold. `npm run chaos` runs the full, random version (docs/chaos.md).
 */
import { formatReport, runChaos, type ChaosReport } from '../../chaos/run';
import { assertBuildIsCurrent } from '../support/processes';

const SEED = 2323;
let report: ChaosReport | undefined;

beforeAll(async () => {
  assertBuildIsCurrent();
  const stripeMockUrl = process.env.STRIPE_API_BASE;
  if (!stripeMockUrl) throw new Error('STRIPE_API_BASE is set by the global setup');
  report = await runChaos({
    seed: SEED,
    workloadMs: 80_000,
    short: true,
    workers: 3,
    apis: 2,
    drainMs: 240_000,
    stripeMockUrl,
    log: () => undefined,
  });
  // The whole report in the test's output when something fails: the seed, every fault's recovery, each violation.
  if (!report.ok) console.log(formatReport(report));
}, 900_000);

function ran(): ChaosReport {
  if (!report) throw new Error('the chaos run did not complete (see beforeAll)');
  return report;
}

describe('chaos, short schedule', () => {
  it('injected every fault of the schedule, and the system recovered from each', () => {
    const { byKind, each } = ran().faults;
    expect(byKind).toMatchObject({
      worker_kill: 2,
      api_kill: 1,
      redis_restart: 1,
      redis_pause: 1,
      database_restart: 1,
      stripe_5xx: 1,
      stripe_reset_after: 1,
    });
    expect(each.filter((fault) => fault.recoveryMs === undefined)).toEqual([]);
  });

  it('ran a mixed workload: payments, racing refunds, webhooks, subscriptions on clocks, downloads', () => {
    const { operations } = ran();
    for (const kind of ['payment', 'refund', 'webhook', 'subscription', 'clock_advance', 'invoice_download'] as const) {
      expect({ kind, accepted: operations[kind].accepted > 0 }).toEqual({ kind, accepted: true });
    }
  });

  it('delivered outgoing webhooks to a receiver that sometimes answered 500 or hung', () => {
    const arrivals = ran().webhookArrivals;
    expect(arrivals.accepted).toBeGreaterThan(0);
    expect((arrivals.error_500 ?? 0) + (arrivals.hung ?? 0)).toBeGreaterThan(0);
  });

  it('every invariant holds: nothing lost, nothing charged twice, the books and the audit trail agree', () => {
    const failed = ran().invariants.filter((invariant) => !invariant.ok);
    expect(failed).toEqual([]);
    expect(ran().invariants.map((invariant) => invariant.name)).toEqual([
      'every accepted request reached a final state',
      'no payment has two successful PaymentIntents; no period is paid twice',
      'refunds never exceed their payment',
      'what Stripe charged equals what we recorded',
      'invoices are numbered without gaps and match the money',
      'the audit trail is complete for every action and its chain verifies',
      'every listed outgoing webhook event reached the receiver, verified',
      'each webhook-id accepted at most once, a repeat only where delivery is at least once',
      'no job is left stuck',
      'the system recovered from every fault',
    ]);
  });

  it('no process crashed on its own and the workload saw no contradiction', () => {
    expect(ran().crashes).toEqual([]);
    expect(ran().workloadErrors).toEqual([]);
  });
});
