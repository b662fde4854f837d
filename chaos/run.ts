import { setTimeout as sleep } from 'node:timers/promises';
import { checkInvariants, drain, type InvariantResult } from './invariants';
import { FAULT_KINDS, randomSchedule, runFaults, SHORT_SCHEDULE, type FaultKind, type FaultResult } from './faults';
import { SeededRandom } from './random';
import { ChaosSystem } from './system';
import { Workload, type OperationCount, type OperationKind } from './workload';

export interface ChaosOptions {
  seed: number;
  /** How long the workload runs (faults happen during it); the drain and the checks come after. */
  workloadMs: number;
  /** CI's fixed schedule instead of a random one from the seed. */
  short: boolean;
  workers: number;
  apis: number;
  drainMs: number;
  stripeMockUrl: string;
  log: (line: string) => void;
  /** Given the system's stop, for a caller that stops early (Ctrl-C): its processes, Redis and database go too. */
  onStarted?: (stop: () => Promise<void>) => void;
}

export interface ChaosReport {
  seed: number;
  short: boolean;
  workloadMs: number;
  processes: { apis: number; workers: number };
  operations: Record<OperationKind, OperationCount>;
  faults: { byKind: Record<FaultKind, number>; each: FaultResult[] };
  drainMs: number | undefined;
  invariants: InvariantResult[];
  /** Errors of the workload's own (e.g. an Idempotency-Key answered with two payments). */
  workloadErrors: string[];
  /** What the webhook receiver saw, by its answer (accepted, duplicate, error_500, hung, bad_signature). */
  webhookArrivals: Record<string, number>;
  /** Processes that exited without being killed by the suite. */
  crashes: string[];
  ok: boolean;
}

/** One chaos run: the system up, the workload and the fault schedule at once, a drain, then the invariants. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const random = new SeededRandom(options.seed);
  const faultRandom = random.fork();
  const proxyRandom = random.fork();
  const system = new ChaosSystem({
    workers: options.workers,
    apis: options.apis,
    stripeMockUrl: options.stripeMockUrl,
    random: () => proxyRandom.int(0, 999_999) / 1_000_000,
    log: options.log,
  });
  try {
    options.log(`chaos: seed ${options.seed}; starting ${options.apis} api and ${options.workers} worker processes`);
    options.onStarted?.(() => system.stop());
    await system.start();
    const workload = new Workload(system, random.fork());
    const schedule = options.short
      ? SHORT_SCHEDULE.filter((f) => f.atMs < options.workloadMs)
      : randomSchedule(faultRandom, options.workloadMs, { apis: options.apis, workers: options.workers });
    const startedAt = Date.now();
    workload.start({ payments: 2, subscriptions: 2 });
    const faults = await runFaults(system, workload, schedule, startedAt, options.log);
    const left = startedAt + options.workloadMs - Date.now();
    if (left > 0) await sleep(left);
    options.log('chaos: workload stopping; draining');
    await workload.stop();
    const drainMs = await drain(system, options.drainMs);
    options.log(drainMs === undefined ? 'chaos: did not drain' : `chaos: drained in ${drainMs} ms`);
    const invariants = await checkInvariants(system, workload);
    const notRecovered = faults.filter((f) => f.recoveryMs === undefined);
    invariants.push({
      name: 'the system recovered from every fault',
      ok: notRecovered.length === 0,
      checked: `${faults.length} faults, each within 120 s`,
      violations: notRecovered.map((f) => `${f.kind} at ${f.startedAtMs} ms${f.note ? ` (${f.note})` : ''}`),
    });
    const webhookArrivals: Record<string, number> = {};
    for (const arrival of system.receiver.arrivals) {
      webhookArrivals[arrival.answer] = (webhookArrivals[arrival.answer] ?? 0) + 1;
    }
    const crashes = [...system.apis, ...system.workers, system.database.process]
      .filter((p) => p.unexpectedExits > 0)
      .map((p) => `${p.name} exited ${p.unexpectedExits} time(s) on its own:\n${p.tail(20)}`);
    const byKind = Object.fromEntries(FAULT_KINDS.map((kind) => [kind, 0])) as Record<FaultKind, number>;
    for (const fault of faults) byKind[fault.kind] += 1;
    return {
      seed: options.seed,
      short: options.short,
      workloadMs: options.workloadMs,
      processes: { apis: options.apis, workers: options.workers },
      operations: workload.record.operations,
      faults: { byKind, each: faults },
      drainMs,
      invariants,
      workloadErrors: workload.errors,
      webhookArrivals,
      crashes,
      ok: invariants.every((i) => i.ok) && workload.errors.length === 0 && crashes.length === 0,
    };
  } finally {
    await system.stop();
  }
}

/** The report as people read it. */
export function formatReport(report: ChaosReport): string {
  const lines: string[] = [];
  const pad = (text: string, width: number) => text.padEnd(width);
  lines.push(
    `chaos report — seed ${report.seed}${report.short ? ' (short schedule)' : ''}, ` +
      `${Math.round(report.workloadMs / 1000)} s of workload, ${report.processes.apis} apis + ${report.processes.workers} workers`,
  );
  lines.push('', 'operations                 sent  accepted  refused  gave up');
  for (const [kind, c] of Object.entries(report.operations)) {
    const refusals = Object.entries(c.refusals)
      .map(([reason, n]) => `${n}× ${reason}`)
      .join(', ');
    lines.push(
      `  ${pad(kind, 22)} ${String(c.sent).padStart(6)} ${String(c.accepted).padStart(9)} ${String(c.refused).padStart(8)} ${String(c.gaveUp).padStart(8)}` +
        (refusals ? `  (${refusals})` : ''),
    );
  }
  const arrivals = Object.entries(report.webhookArrivals)
    .map(([answer, n]) => `${n} ${answer}`)
    .join(', ');
  lines.push(`  ${pad('webhook deliveries', 22)} ${arrivals || 'none'}  (the receiver's answers)`);
  lines.push('', 'faults injected');
  for (const [kind, n] of Object.entries(report.faults.byKind)) if (n > 0) lines.push(`  ${pad(kind, 22)} ${n}`);
  lines.push('', 'recovery after each fault (until every api is ready and a new payment succeeds)');
  for (const f of report.faults.each) {
    lines.push(
      `  ${(f.startedAtMs / 1000).toFixed(1).padStart(6)} s  ${pad(f.kind, 20)} ${String(f.durationMs).padStart(6)} ms` +
        `  → ${f.recoveryMs === undefined ? 'NOT RECOVERED' : `${f.recoveryMs} ms`}${f.note ? `  (${f.note})` : ''}`,
    );
  }
  lines.push('', `drain: ${report.drainMs === undefined ? 'did NOT drain' : `${report.drainMs} ms`}`, '', 'invariants');
  for (const i of report.invariants) {
    lines.push(`  ${i.ok ? 'PASS' : 'FAIL'}  ${i.name} — ${i.checked}`);
    for (const violation of i.violations) lines.push(`          ${violation}`);
  }
  for (const error of report.workloadErrors.slice(0, 20)) lines.push(`  workload error: ${error}`);
  for (const crash of report.crashes) lines.push(`  crash: ${crash}`);
  lines.push(
    '',
    report.ok ? `OK (seed ${report.seed})` : `FAILED — replay with: npm run chaos -- --seed ${report.seed}`,
  );
  return lines.join('\n');
}
