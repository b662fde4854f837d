import type { Queue } from 'bullmq';
import { z } from 'zod';

/** Scheduled housekeeping. The payload is empty: each run reads what is due from MongoDB. */
export const maintenanceJobSchema = z.object({}).strict();
export type MaintenanceJob = z.infer<typeof maintenanceJobSchema>;

export const OUTBOX_SWEEP_JOB = 'outbox-sweep';

/** Idempotent: every process may call it at start-up; BullMQ keeps one scheduler per id. */
export async function scheduleOutboxSweep(queue: Queue<MaintenanceJob>, everyMs: number): Promise<void> {
  await queue.upsertJobScheduler(
    OUTBOX_SWEEP_JOB,
    { every: everyMs },
    { name: OUTBOX_SWEEP_JOB, data: {}, opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 1_000 } } },
  );
}
