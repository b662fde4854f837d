import { setTimeout as sleep } from 'node:timers/promises';
import { ulid } from 'ulid';
import type { SeededRandom } from './random';
import type { StripeFaultKind } from './stripe-proxy';
import type { ChaosSystem } from './system';
import type { Workload } from './workload';

export type FaultKind =
  'worker_kill' | 'api_kill' | 'redis_restart' | 'redis_pause' | 'database_restart' | StripeFaultKind;
export const FAULT_KINDS: readonly FaultKind[] = [
  'worker_kill',
  'api_kill',
  'redis_restart',
  'redis_pause',
  'database_restart',
  'stripe_slow',
  'stripe_5xx',
  'stripe_reset_after',
  'stripe_429',
];

export interface ScheduledFault {
  /** When it starts, from the workload's start. */
  atMs: number;
  kind: FaultKind;
  /** Which process, for kills (an index into the apis or workers). */
  target: number;
  /** How long it lasts: down time for kills and Redis, the window for Stripe faults. */
  durationMs: number;
}

export interface FaultResult extends ScheduledFault {
  startedAtMs: number;
  /** From the fault's end (process up again, Redis answering, Stripe healthy) until the system answers and drains. */
  recoveryMs: number | undefined;
  target: number;
  note?: string;
}

/** The share of Stripe requests a Stripe fault window hits, and how slow "slow" is (above STRIPE_TIMEOUT_MS). */
const STRIPE_SHARE = 0.6;
const SLOW_MS = 4_000;
const RECOVERY_LIMIT_MS = 120_000;

/** The full run's schedule: faults of every kind at random moments, one after another, from the seed. */
export function randomSchedule(random: SeededRandom, workloadMs: number, counts: { apis: number; workers: number }) {
  const schedule: ScheduledFault[] = [];
  let at = random.int(5_000, 10_000);
  // Every kind once first (shuffled), then at random; kills twice as likely as the rest.
  const firsts = [...FAULT_KINDS];
  while (at < workloadMs - 10_000) {
    const kind =
      firsts.length > 0
        ? firsts.splice(random.int(0, firsts.length - 1), 1)[0]!
        : random.weighted<FaultKind>({
            worker_kill: 4,
            api_kill: 3,
            redis_restart: 2,
            redis_pause: 2,
            database_restart: 2,
            stripe_slow: 1,
            stripe_5xx: 1,
            stripe_reset_after: 2,
            stripe_429: 1,
          });
    schedule.push({
      atMs: at,
      kind,
      target: random.int(0, (kind === 'api_kill' ? counts.apis : counts.workers) - 1),
      durationMs: kind.startsWith('stripe')
        ? random.int(5_000, 15_000)
        : kind === 'redis_pause'
          ? random.int(1_000, 6_000)
          : random.int(200, 3_000),
    });
    at += random.int(8_000, 25_000);
  }
  return schedule;
}

/** CI's short run: one of each kind that matters most, at fixed moments, within 80 s of workload. */
export const SHORT_SCHEDULE: readonly ScheduledFault[] = [
  { atMs: 6_000, kind: 'worker_kill', target: 0, durationMs: 1_000 },
  { atMs: 14_000, kind: 'api_kill', target: 1, durationMs: 1_000 },
  { atMs: 24_000, kind: 'redis_restart', target: 0, durationMs: 1_500 },
  { atMs: 30_000, kind: 'database_restart', target: 0, durationMs: 2_000 },
  { atMs: 36_000, kind: 'stripe_5xx', target: 0, durationMs: 6_000 },
  { atMs: 48_000, kind: 'stripe_reset_after', target: 0, durationMs: 6_000 },
  { atMs: 60_000, kind: 'redis_pause', target: 0, durationMs: 2_000 },
  { atMs: 68_000, kind: 'worker_kill', target: 1, durationMs: 500 },
];

/** Runs the schedule against the system while the workload runs; resolves when every fault is recovered from. */
export async function runFaults(
  system: ChaosSystem,
  workload: Workload,
  schedule: readonly ScheduledFault[],
  startedAt: number,
  log: (line: string) => void,
): Promise<FaultResult[]> {
  const running: Array<Promise<FaultResult>> = [];
  for (const fault of schedule) {
    const wait = startedAt + fault.atMs - Date.now();
    if (wait > 0) await sleep(wait);
    // Each fault runs (and is recovered from) on its own: the next one comes at its moment, as faults do.
    running.push(injectAndRecover(system, workload, fault, Date.now() - startedAt, log));
  }
  return Promise.all(running);
}

async function injectAndRecover(
  system: ChaosSystem,
  workload: Workload,
  fault: ScheduledFault,
  startedAtMs: number,
  log: (line: string) => void,
): Promise<FaultResult> {
  let note: string | undefined;
  switch (fault.kind) {
    case 'worker_kill': {
      const target = system.workers[fault.target % system.workers.length]!;
      note = `${target.name} pid ${target.pid}`;
      await system.crashAndRestart(target, fault.durationMs);
      break;
    }
    case 'api_kill': {
      const target = system.apis[fault.target % system.apis.length]!;
      note = `${target.name} pid ${target.pid}`;
      await system.crashAndRestart(target, fault.durationMs);
      break;
    }
    case 'redis_restart':
      await system.restartRedis(fault.durationMs);
      break;
    case 'redis_pause':
      await system.pauseRedis(fault.durationMs);
      break;
    case 'database_restart':
      note = `ferretdb pid ${system.database.process.pid}`;
      await system.restartDatabase(fault.durationMs);
      break;
    default:
      system.proxy.inject(fault.kind, STRIPE_SHARE, SLOW_MS);
      await sleep(fault.durationMs);
      system.proxy.clear(fault.kind);
  }
  const recoveryMs = await recovery(system, workload);
  log(
    `fault ${fault.kind}${note ? ` (${note})` : ''} at ${(startedAtMs / 1000).toFixed(1)} s for ${fault.durationMs} ms: ` +
      (recoveryMs === undefined ? 'NOT recovered' : `recovered in ${recoveryMs} ms after it ended`),
  );
  return { ...fault, startedAtMs, recoveryMs, ...(note ? { note } : {}) };
}

/**
 * Time until the system answers and drains again: every api is ready, and a new payment (a probe, one of the
 * workload's payments) is charged and recorded succeeded.
 */
async function recovery(system: ChaosSystem, workload: Workload): Promise<number | undefined> {
  const from = Date.now();
  const deadline = from + RECOVERY_LIMIT_MS;
  while (!(await system.ready())) {
    if (Date.now() > deadline) return undefined;
    await sleep(100);
  }
  const amount = 1_000;
  const accepted = await workload.call(
    'payment',
    'POST',
    '/payments',
    { amount, currency: 'usd', customer: 'cus_ChaosProbe', paymentMethod: 'pm_card_visa', serviceCategory: 'copay' },
    { idempotencyKey: `chaos-probe-${ulid()}` },
  );
  if (accepted?.status !== 202) return undefined;
  const id = String(accepted.body.id);
  workload.record.payments.push({ id, card: 'visa', amount });
  while (Date.now() < deadline) {
    const payment = await workload.call(undefined, 'GET', `/payments/${id}`);
    if (payment?.body.status === 'succeeded') return Date.now() - from;
    if (payment && !['queued', 'processing'].includes(String(payment.body.status))) return undefined;
    await sleep(100);
  }
  return undefined;
}
