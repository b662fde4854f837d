import type { AuditEventInput } from '../../domain/audit-event';

/**
 * The audit events of one outcome (a payment settled, its invoice issued and rendered), collected while the job works
 * and sent together at its end: one ordered append for all of them (in the job itself, or one audit job when that
 * fails: application/audit/append-events.ts), instead of one job and one append per event. Work that must only be
 * queued once those events are recorded (the fallback render job, which then knows `finalized` was sent) waits for the
 * flush too.
 *
 * Exactly once: every event keeps its fixed id (the trail stores an id once), and the job that collected them only
 * completes after `flush`; a crash or a failed flush before that retries the job, which collects and sends them again.
 * A job whose retry would not send an event again once some write is made (a renewal, once the period is recorded
 * paid) flushes before that write too (workers/renewals.worker.ts).
 */
export class OutcomeAudit {
  private events: AuditEventInput[] = [];
  private afterFlush: Array<() => Promise<void>> = [];

  constructor(private readonly send: (events: readonly AuditEventInput[]) => Promise<void>) {}

  /** Collects an event (the `enqueueAudit` of the use cases the outcome runs through). */
  readonly add = (event: AuditEventInput): Promise<void> => {
    if (!this.events.some((known) => known.eventId === event.eventId)) this.events.push(event);
    return Promise.resolve();
  };

  /** Runs `task` once the events collected so far are queued (at `flush`). */
  readonly whenQueued = (task: () => Promise<void>): Promise<void> => {
    this.afterFlush.push(task);
    return Promise.resolve();
  };

  /**
   * Queues what was collected (in one job), then the work that waited for it. May be called again: each call sends
   * what was collected since the last. Events the queue did not take stay collected (a flush in a `catch` tries them
   * once more before the job fails).
   */
  async flush(): Promise<void> {
    const events = this.events.splice(0);
    if (events.length > 0) {
      try {
        await this.send(events);
      } catch (error) {
        this.events.unshift(...events);
        throw error;
      }
    }
    const tasks = this.afterFlush.splice(0);
    for (const task of tasks) await task();
  }
}
