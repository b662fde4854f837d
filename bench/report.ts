/**
 * What every bench entry returns, the human table (the default output) and the
 * JSON document (`--json`). Benchmarks report; they never assert.
 */
import type { PerOp } from './system';

export interface Baseline {
  /** What ran, e.g. "bare Fastify route" or "same MongoDB/Redis commands, plain clients". */
  what: string;
  perSecond: number;
  p99Ms?: number | null;
  /** For the data-bound baseline: what the replay itself cost, to compare with the product's. */
  mongoCommandsPerOp?: number;
  redisCommandsPerOp?: number;
  cpuMsPerOp?: number;
  processes?: PerOp['processes'];
}

/** The data-bound baseline of an entry: what its replay did and what that cost per operation (`perOp` of its run). */
export function dataBoundBaseline(
  what: string,
  perSecond: number,
  cost: Pick<PerOp, 'mongoCommandsPerOp' | 'redisCommandsPerOp' | 'cpuMsPerOp' | 'processes'>,
  p99Ms?: number | null,
): Baseline {
  const { mongoCommandsPerOp, redisCommandsPerOp, cpuMsPerOp, processes } = cost;
  return {
    what,
    perSecond,
    ...(p99Ms === undefined ? {} : { p99Ms }),
    mongoCommandsPerOp,
    redisCommandsPerOp,
    cpuMsPerOp,
    processes,
  };
}

export interface EntryResult extends Omit<PerOp, 'processes' | 'commands'> {
  name: string;
  /** One line: what was measured and with which parameters. */
  summary: string;
  /** What one operation is ("requests", "charges", "events"). */
  unit: string;
  ops: number;
  seconds: number;
  perSecond: number;
  /** Request latency seen by the load generator; null where no request is timed (audit). */
  p50Ms: number | null;
  p99Ms: number | null;
  /**
   * `withCrypto` (the request entries): the data-bound replay plus the cryptography the product must do on that path
   * (signature check, field encryption, the request's sealed ip and user agent), to tell that cost from ours.
   */
  baselines: { limit: Baseline; dataBound: Baseline; withCrypto?: Baseline };
  /** perSecond over the baseline's: 1 means as fast as it. */
  ratioToLimit: number;
  ratioToDataBound: number;
  ratioToDataWithCrypto?: number;
  processes: PerOp['processes'];
  commands: PerOp['commands'];
}

export interface BenchEntry {
  /** Short, stable, used to select entries on the command line. */
  name: string;
  run(): Promise<EntryResult>;
}

const round = (value: number, digits: number) => Number(value.toFixed(digits));

export function entryResult(
  fields: Omit<
    EntryResult,
    'perSecond' | 'ratioToLimit' | 'ratioToDataBound' | 'ratioToDataWithCrypto' | keyof PerOp
  > & { perOp: PerOp },
): EntryResult {
  const { perOp, ...rest } = fields;
  const { withCrypto } = fields.baselines;
  const perSecond = fields.ops / fields.seconds;
  return {
    ...rest,
    seconds: round(fields.seconds, 2),
    perSecond: round(perSecond, 1),
    p50Ms: fields.p50Ms === null ? null : round(fields.p50Ms, 1),
    p99Ms: fields.p99Ms === null ? null : round(fields.p99Ms, 1),
    baselines: {
      limit: { ...fields.baselines.limit, perSecond: round(fields.baselines.limit.perSecond, 1) },
      dataBound: { ...fields.baselines.dataBound, perSecond: round(fields.baselines.dataBound.perSecond, 1) },
      ...(withCrypto ? { withCrypto: { ...withCrypto, perSecond: round(withCrypto.perSecond, 1) } } : {}),
    },
    ratioToLimit: round(perSecond / fields.baselines.limit.perSecond, 3),
    ratioToDataBound: round(perSecond / fields.baselines.dataBound.perSecond, 3),
    ...(withCrypto ? { ratioToDataWithCrypto: round(perSecond / withCrypto.perSecond, 3) } : {}),
    ...perOp,
  };
}

function fixed(value: number | null | undefined, digits: number): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  return rows.map((row) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[0]!) : cell.padStart(widths[column]!))).join('  '),
  );
}

/** One entry, in detail: the three rates, then what one operation cost and where. */
export function formatResult(result: EntryResult): string {
  const { limit, dataBound, withCrypto } = result.baselines;
  const rates = table([
    ['', `${result.unit}/s`, 'p50 ms', 'p99 ms', 'ratio'],
    ['product', fixed(result.perSecond, 1), fixed(result.p50Ms, 1), fixed(result.p99Ms, 1), ''],
    [
      `data-bound: ${dataBound.what}`,
      fixed(dataBound.perSecond, 1),
      '',
      fixed(dataBound.p99Ms, 1),
      fixed(result.ratioToDataBound, 3),
    ],
    ...(withCrypto
      ? [
          [
            `data-bound + crypto: ${withCrypto.what}`,
            fixed(withCrypto.perSecond, 1),
            '',
            fixed(withCrypto.p99Ms, 1),
            fixed(result.ratioToDataWithCrypto, 3),
          ],
        ]
      : []),
    [`limit: ${limit.what}`, fixed(limit.perSecond, 1), '', fixed(limit.p99Ms, 1), fixed(result.ratioToLimit, 3)],
  ]);
  const settled = result.settledRssMb !== undefined;
  const row = (label: string, p: (typeof result.processes)[string]) => [
    label,
    fixed(p.cpuMsPerOp, 2),
    fixed(p.mongoCommandsPerOp, 2),
    fixed(p.redisCommandsPerOp, 2),
    fixed(p.rssMb, 0),
    `${p.rssGrowthMb >= 0 ? '+' : ''}${fixed(p.rssGrowthMb, 0)}`,
    fixed(p.heapUsedMb, 0),
    ...(settled ? [fixed(p.settledRssMb, 0)] : []),
  ];
  const processes = table([
    [
      'per operation',
      'CPU ms',
      'MongoDB',
      'Redis',
      'RSS MB',
      '(+run)',
      'heap MB',
      ...(settled ? ['settled RSS MB'] : []),
    ],
    ...Object.entries(result.processes).map(([label, p]) => row(label, p)),
    ...Object.entries(dataBound.processes ?? {}).map(([label, p]) => row(`${label} (replay)`, p)),
    ...Object.entries(withCrypto?.processes ?? {}).map(([label, p]) => row(`${label} (replay)`, p)),
    ...Object.entries(limit.processes ?? {}).map(([label, p]) => row(`${label} (limit)`, p)),
  ]);
  const named = (counts: Record<string, number>) =>
    Object.entries(counts)
      .map(([name, n]) => `${name} ${n}`)
      .join(', ');
  return [
    `== ${result.name}: ${result.summary}`,
    ...rates.map((line) => `  ${line}`),
    ...processes.map((line) => `  ${line}`),
    `  MongoDB commands per op: ${named(result.commands.mongo) || '-'}`,
    `  Redis commands per op:   ${named(result.commands.redis) || '-'}`,
  ].join('\n');
}

/** Every entry in one table: the README's. */
export function formatSummary(results: EntryResult[]): string {
  const settled = results.some((r) => r.settledRssMb !== undefined);
  return table([
    [
      'entry',
      'ops',
      '/s',
      'p50 ms',
      'p99 ms',
      'data-bound /s',
      'limit /s',
      '× data',
      '× +crypto',
      '× limit',
      'Mongo/op',
      'Redis/op',
      'CPU ms/op',
      'RSS MB',
      ...(settled ? ['settled MB'] : []),
    ],
    ...results.map((r) => [
      r.name,
      String(r.ops),
      fixed(r.perSecond, 1),
      fixed(r.p50Ms, 1),
      fixed(r.p99Ms, 1),
      fixed(r.baselines.dataBound.perSecond, 1),
      fixed(r.baselines.limit.perSecond, 1),
      fixed(r.ratioToDataBound, 2),
      fixed(r.ratioToDataWithCrypto, 2),
      fixed(r.ratioToLimit, 3),
      fixed(r.mongoCommandsPerOp, 2),
      fixed(r.redisCommandsPerOp, 2),
      fixed(r.cpuMsPerOp, 2),
      fixed(r.rssMb, 0),
      ...(settled ? [fixed(r.settledRssMb, 0)] : []),
    ]),
  ]).join('\n');
}
