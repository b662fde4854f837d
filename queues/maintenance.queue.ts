import type { Queue } from 'bullmq';

/** Scheduled housekeeping. The payload is empty: each run reads what is due from MongoDB. */
export type MaintenanceJob = Record<string, never>;

export const MAINTENANCE_JOBS = {
  outboxSweep: 'outbox-sweep',
  auditAnchor: 'audit-anchor',
  auditRetention: 'audit-retention',
  gatewayReconcile: 'gateway-reconcile',
} as const;
export type MaintenanceJobName = (typeof MAINTENANCE_JOBS)[keyof typeof MAINTENANCE_JOBS];

/** Idempotent: every process may call it at start-up; BullMQ keeps one scheduler per id. */
export async function scheduleMaintenance(
  queue: Queue<MaintenanceJob>,
  every: Record<MaintenanceJobName, number>,
): Promise<void> {
  for (const [name, everyMs] of Object.entries(every)) {
    await queue.upsertJobScheduler(
      name,
      { every: everyMs },
      { name, data: {}, opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 1_000 } } },
    );
  }
}
