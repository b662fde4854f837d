/**
 * `npm run chaos [-- --seed S --minutes M --short --json --workers N]`: the fault suite (docs/chaos.md). Exits 1 when
 * an invariant fails, printing the seed to replay.
 */
import { parseArgs } from 'node:util';
import { formatReport, runChaos } from './run';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      minutes: { type: 'string' },
      short: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      workers: { type: 'string', default: '3' },
      apis: { type: 'string', default: '2' },
    },
  });
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const minutes = Number(values.minutes ?? (values.short ? 1.4 : 5));
  if (!Number.isInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${values.seed}`);
  if (!(minutes > 0)) throw new Error(`--minutes must be a positive number, got ${values.minutes}`);
  // The MongoDB-wire server is the run's own FerretDB (chaos/database.ts): only stripe-mock comes from outside.
  const stripeMockUrl = process.env.STRIPE_API_BASE;
  if (!stripeMockUrl) throw new Error('STRIPE_API_BASE (stripe-mock) must be set');
  const log = (line: string) => console.error(`[${new Date().toISOString()}] ${line}`);
  log(`chaos: seed ${seed} (replay: npm run chaos -- --seed ${seed}${values.short ? ' --short' : ''})`);
  const report = await runChaos({
    seed,
    workloadMs: Math.round(minutes * 60_000),
    short: values.short ?? false,
    workers: Number(values.workers),
    apis: Number(values.apis),
    drainMs: 180_000,
    stripeMockUrl,
    log,
    onStarted: (stop) => {
      // Ctrl-C or a kill: the run's processes, Redis, database and files are removed before it exits.
      const interrupted = (signal: NodeJS.Signals) => {
        log(`chaos: ${signal}; stopping the system (seed ${seed})`);
        void stop().finally(() => process.exit(130));
      };
      process.once('SIGINT', interrupted);
      process.once('SIGTERM', interrupted);
    },
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  if (!report.ok) console.error(`chaos: FAILED with seed ${seed}`);
  return report.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
