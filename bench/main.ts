/**
 * `npm run bench [-- [--json] [--quick] NAME ...]`: runs the named bench entries (all when
 * none are named), one after another. By default it prints each entry's detail
 * as it finishes and one table at the end; with `--json` it prints one JSON
 * object, `{"entries":[…]}`, and nothing else on stdout (progress goes to
 * stderr). Benchmarks report numbers; nothing here asserts on timing. Exit 0
 * when every entry ran, 1 with the reason otherwise. Services come from
 * REDIS_URL, MONGODB_URI and STRIPE_API_BASE.
 *
 * Adding an entry: a `bench/<name>.bench.ts` exporting a `BenchEntry`, and one line in ENTRIES.
 */
import { auditBench } from './audit.bench';
import {
  chargesBench,
  chargesFourWorkersBench,
  chargesScaling,
  chargesTwoWorkersBench,
  formatScaling,
} from './charges.bench';
import { deliveriesBench } from './deliveries.bench';
import { invoicesBench } from './invoices.bench';
import { renewalsBench } from './renewals.bench';
import { requestsBench } from './requests.bench';
import { webhooksBench } from './webhooks.bench';
import { formatResult, formatSummary, type BenchEntry, type EntryResult } from './report';
import { assertServicesReachable, serviceAddresses } from './support';

const ENTRIES: readonly BenchEntry[] = [
  requestsBench,
  webhooksBench,
  deliveriesBench,
  chargesBench,
  chargesTwoWorkersBench,
  chargesFourWorkersBench,
  auditBench,
  renewalsBench,
  invoicesBench,
];

function selectEntries(names: string[]): BenchEntry[] {
  if (names.length === 0) return [...ENTRIES];
  const unknown = names.filter((name) => !ENTRIES.some((entry) => entry.name === name));
  if (unknown.length > 0) {
    throw new Error(`unknown bench entry ${unknown.join(', ')} (one of: ${ENTRIES.map((e) => e.name).join(', ')})`);
  }
  return ENTRIES.filter((entry) => names.includes(entry.name));
}

async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  // `--quick`: smaller sizes, for entries that read BENCH_QUICK (renewals, invoices).
  if (argv.includes('--quick')) process.env.BENCH_QUICK = '1';
  const entries = selectEntries(argv.filter((arg) => arg !== '--json' && arg !== '--quick'));
  await assertServicesReachable(serviceAddresses());
  const results: EntryResult[] = [];
  for (const entry of entries) {
    const started = Date.now();
    let result: EntryResult;
    try {
      result = await entry.run();
    } catch (error) {
      throw new Error(`bench entry "${entry.name}" failed: ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
      });
    }
    results.push(result);
    const took = `  (entry took ${((Date.now() - started) / 1000).toFixed(1)} s in all)`;
    if (json) process.stderr.write(`bench: ${entry.name} done${took}\n`);
    else process.stdout.write(`${formatResult(result)}\n${took}\n\n`);
  }
  const scaling = chargesScaling(results);
  if (json) process.stdout.write(`${JSON.stringify({ entries: results, chargesScaling: scaling }, null, 2)}\n`);
  else {
    if (results.length > 1) process.stdout.write(`${formatSummary(results)}\n`);
    if (scaling.length > 0) process.stdout.write(`\n${formatScaling(scaling)}\n`);
  }
}

/** Normally the process ends by itself once everything is closed; if something still holds it open, say so and go. */
function exitSoon(code: number): void {
  process.exitCode = code;
  setTimeout(() => {
    process.stderr.write('bench: something was left open after the run (a cleanup bug); exiting anyway\n');
    process.exit(code);
  }, 5_000).unref();
}

main(process.argv.slice(2)).then(
  () => exitSoon(0),
  (error: unknown) => {
    process.stderr.write(`bench failed: ${error instanceof Error ? error.message : String(error)}\n`);
    exitSoon(1);
  },
);
