/** What every bench entry returns, and the one formatter that prints it. Benchmarks report; they never assert. */

export interface Throughput {
  /** What was measured, e.g. "whole path" or "baseline: no-op BullMQ jobs". */
  label: string;
  /** How many units were done in `seconds`. */
  count: number;
  seconds: number;
}

export interface BenchResult {
  /** One line saying what ran and with which parameters. */
  summary: string;
  throughput: Throughput[];
  /** Derived numbers (ratios, latency percentiles), already formatted. */
  metrics: Array<{ label: string; value: string }>;
}

export interface BenchEntry {
  /** Short, stable, used to select entries on the command line. */
  name: string;
  /** What the entry counts, for the table header ("jobs", "requests", "events"). */
  unit: string;
  run(): Promise<BenchResult>;
}

export function perSecond(count: number, seconds: number): number {
  return seconds > 0 ? count / seconds : Number.POSITIVE_INFINITY;
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '∞';
}

export function formatResult(entry: Pick<BenchEntry, 'name' | 'unit'>, result: BenchResult): string {
  const header = ['', entry.unit, 'seconds', `${entry.unit}/s`];
  const rows = result.throughput.map((t) => [
    t.label,
    String(t.count),
    fixed(t.seconds, 2),
    fixed(perSecond(t.count, t.seconds), 1),
  ]);
  const table = [header, ...rows];
  const widths = header.map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!))).join('   ');
  const metricWidth = Math.max(0, ...result.metrics.map((m) => m.label.length));
  return [
    `== ${entry.name}: ${result.summary}`,
    ...table.map((row) => `  ${line(row)}`),
    ...result.metrics.map((m) => `  ${m.label.padEnd(metricWidth)}   ${m.value}`),
  ].join('\n');
}
