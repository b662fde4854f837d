import type { Job, Queue } from 'bullmq';
import type { AuditEventInput } from '../domain/audit-event';
import type { SubscriptionPeriodRecord } from '../models/subscription.model';
import { OutcomeAudit } from '../application/payments/outcome-audit';
import { renewSubscription, type RenewDeps, type RenewOutcome } from '../application/subscriptions/renew-subscription';
import { sweepRenewals, type SweepRenewalsResult } from '../application/subscriptions/sweep-renewals';
import { runClockAdvance } from '../application/subscriptions/test-clocks';
import { continueClockAdvance, RENEWAL_JOBS, type RenewalJob } from '../queues/renewals.queue';
import { JobFailedError, type JobContext } from './queue-worker';

export interface RenewalsDeps extends Omit<
  RenewDeps,
  'logger' | 'flushAudit' | 'onPeriodPaid' | 'onPeriodUncollectible'
> {
  renewalsQueue: Queue<RenewalJob>;
  /**
   * Records several events together: appended in the job, or queued as one audit job when that fails
   * (application/audit/append-events.ts). Without it, a renewal queues one audit job per event.
   */
  sendAuditEvents?: (events: readonly AuditEventInput[]) => Promise<void>;
  /** `RenewDeps.onPeriodPaid`, given the run's audit batch: the invoice's events go into it. */
  onPeriodPaid?: (
    period: SubscriptionPeriodRecord,
    known?: Parameters<NonNullable<RenewDeps['onPeriodPaid']>>[1],
    audit?: OutcomeAudit,
  ) => Promise<void>;
  /** `RenewDeps.onPeriodUncollectible`, given the run's audit batch. */
  onPeriodUncollectible?: (period: SubscriptionPeriodRecord, at: Date, audit?: OutcomeAudit) => Promise<void>;
}

export type RenewalResult = { outcome: RenewOutcome } | SweepRenewalsResult | { renewed: number };

/**
 * The renewals queue's processor: `renew` one subscription (application/subscriptions/renew-subscription.ts),
 * the scheduled `sweep` that queues what is due, and a test clock's `advance-clock`.
 */
export async function processRenewal(
  job: Job<RenewalJob>,
  deps: RenewalsDeps,
  context: JobContext,
): Promise<RenewalResult> {
  const { logger } = context;
  const data = job.data as { subscriptionId?: string; testClockId?: string };
  switch (job.name) {
    case RENEWAL_JOBS.renew:
      if (!data.subscriptionId) throw new JobFailedError('invalid_payload', 'a renew job names its subscription');
      return { outcome: await renewWithOneAuditJob(deps, context, data.subscriptionId) };
    case RENEWAL_JOBS.sweep:
      return sweepRenewals({ ...deps, logger });
    case RENEWAL_JOBS.advanceClock: {
      if (!data.testClockId) throw new JobFailedError('invalid_payload', 'an advance job names its test clock');
      const advanced = await runClockAdvance({ ...deps, logger }, data.testClockId);
      // A long advance (a year of many subscriptions) goes on in a job of its own, however long it takes.
      if (advanced.unfinished) await continueClockAdvance(deps.renewalsQueue, data.testClockId);
      return advanced;
    }
    default:
      throw new JobFailedError('unknown_renewal_job', `unknown renewal job ${job.name}`);
  }
}

/**
 * One renewal run with its audit events collected (its own, and those of the invoice it issues) and sent together:
 * one ordered append, where the run's writes allow it. Events a rerun would send again (the period
 * paid, its invoice finalized and rendered: fixed ids, sent before the write that records the period) are queued just
 * before that write; an event sent after its write (a status move, an attempt recorded) before the run's next write or
 * at its end; everything collected is queued however the run ends (a throw queues first). The charge the run starts
 * is queued after its events, so a charge's own events follow the attempt's on the chain.
 */
async function renewWithOneAuditJob(
  deps: RenewalsDeps,
  context: JobContext,
  subscriptionId: string,
): Promise<RenewOutcome> {
  const { sendAuditEvents } = deps;
  if (!sendAuditEvents) return renewSubscription({ ...deps, logger: context.logger }, subscriptionId);
  const audit = new OutcomeAudit(sendAuditEvents);
  let outcome: RenewOutcome;
  try {
    outcome = await renewInBatch(deps, context.logger, subscriptionId, audit);
  } catch (error) {
    await audit.flush();
    throw error;
  }
  await audit.flush();
  return outcome;
}

/**
 * A renewal run whose events go into `audit`, a batch its caller queues when its job ends (however it ends): the renew
 * job's own, or the charge job's whose payment outcome the run records (workers/registry.ts `afterPaymentOutcome`).
 * The run flushes the batch before each write after which a rerun would not send what was collected (see above).
 */
export function renewInBatch(
  deps: RenewalsDeps,
  logger: JobContext['logger'],
  subscriptionId: string,
  audit: OutcomeAudit,
  settledPayment?: RenewDeps['settledPayment'],
): Promise<RenewOutcome> {
  const { onPeriodPaid, onPeriodUncollectible } = deps;
  return renewSubscription(
    {
      ...deps,
      logger,
      ...(settledPayment ? { settledPayment } : {}),
      enqueueAudit: audit.add,
      flushAudit: () => audit.flush(),
      enqueueCharge: (payment) => audit.whenQueued(() => deps.enqueueCharge(payment)),
      ...(onPeriodPaid ? { onPeriodPaid: (period, known) => onPeriodPaid(period, known, audit) } : {}),
      ...(onPeriodUncollectible
        ? { onPeriodUncollectible: (period, at) => onPeriodUncollectible(period, at, audit) }
        : {}),
    },
    subscriptionId,
  );
}
