import type { Models } from '../../models';
import type { Queues } from '../../queues';
import { gaugeOnScrape } from '../../platform/metrics';

const JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed'] as const;

/**
 * Gauges read when Prometheus scrapes: jobs by queue and state (BullMQ's own counts), the audit backlog, renewals
 * due and subscriptions by status (dunning), and payments and refunds that need attention. Counts only.
 */
export function registerOperationalGauges(deps: {
  queues: Queues;
  models: Pick<Models, 'Subscription' | 'Payment' | 'Refund'>;
  /** Scrapes within this many milliseconds of a read get its values (default: every scrape reads). */
  cacheMs?: number;
}): void {
  const { queues, models } = deps;
  const cache = { cacheMs: deps.cacheMs ?? 0 };
  gaugeOnScrape(
    'hipaa_billing_jobs',
    'Jobs by queue and state',
    ['queue', 'state'],
    async () => {
      const rows = await Promise.all(
        Object.entries(queues).map(async ([queue, q]) => {
          const counts = await q.getJobCounts(...JOB_STATES);
          return JOB_STATES.map((state) => ({ labels: { queue, state }, value: counts[state] ?? 0 }));
        }),
      );
      return rows.flat();
    },
    cache,
  );
  gaugeOnScrape(
    'hipaa_billing_audit_backlog',
    'Audit events queued and not yet appended to the trail',
    [],
    async () => {
      const counts = await queues.audit.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      return [{ labels: {}, value: Object.values(counts).reduce((sum, n) => sum + n, 0) }];
    },
    cache,
  );
  gaugeOnScrape(
    'hipaa_billing_renewals_due',
    'Subscriptions due for renewal now (test clocks excluded)',
    [],
    async () => [
      {
        labels: {},
        value: await models.Subscription.countDocuments({
          nextBillingAt: { $lte: new Date() },
          testClockId: { $exists: false },
        }),
      },
    ],
    cache,
  );
  gaugeOnScrape(
    'hipaa_billing_subscriptions',
    'Subscriptions by status, and those whose collection waits on the payer (waiting_for)',
    ['status', 'waiting_for'],
    async () => {
      const [byStatus, byWait] = await Promise.all([
        models.Subscription.aggregate<{ _id: string; n: number }>([{ $group: { _id: '$status', n: { $sum: 1 } } }]),
        models.Subscription.aggregate<{ _id: string | null; n: number }>([
          { $match: { waitingFor: { $exists: true } } },
          { $group: { _id: '$waitingFor', n: { $sum: 1 } } },
        ]),
      ]);
      return [
        ...byStatus.map((row) => ({ labels: { status: row._id, waiting_for: 'none' }, value: row.n })),
        ...byWait.map((row) => ({ labels: { status: 'any', waiting_for: String(row._id) }, value: row.n })),
      ];
    },
    cache,
  );
  gaugeOnScrape(
    'hipaa_billing_needs_attention',
    'Payments and refunds an earlier attempt may have settled at the gateway, that a retry could not ask about',
    ['kind'],
    async () => [
      { labels: { kind: 'payment' }, value: await models.Payment.countDocuments({ status: 'needs_attention' }) },
      { labels: { kind: 'refund' }, value: await models.Refund.countDocuments({ status: 'needs_attention' }) },
    ],
    cache,
  );
}
