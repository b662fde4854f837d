/**
 * Draws the README's chart from `npm run -s bench -- --json` output:
 *
 *   npm run -s bench -- --json > bench/results.json && node dist/bench/chart.js bench/results.json docs/bench.svg
 *
 * Top: each entry's rate next to its two baselines from the same run (log scale).
 * Bottom: the rate as a share of the data-bound baseline, with the targets as red
 * ticks (issue 22's: 0.9 for POST payment and the verified webhook, 0.8 for charges
 * and renewals end to end, audit appends and outgoing deliveries; the runs with 2 and
 * 4 workers processes measure scaling and have none; the invoices goal is a share of
 * its limit, bare PDFKit rendering, so it has no tick here).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { EntryResult } from './report';

type ChartEntry = Pick<EntryResult, 'name' | 'perSecond' | 'baselines' | 'ratioToDataBound' | 'cpuMsPerOp'>;

// vega and vega-lite are ESM-only (top-level await): a real dynamic import, which
// TypeScript's CommonJS output would otherwise turn into require().
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

interface VegaLite {
  compile(spec: object): { spec: object };
}
interface Vega {
  parse(spec: object): unknown;
  View: new (runtime: unknown, options: { renderer: 'none' }) => { toSVG(): Promise<string>; finalize(): void };
}

export function chartSpec(entries: ChartEntry[]): object {
  const TARGETS: Record<string, number> = {
    requests: 0.9,
    webhooks: 0.9,
    deliveries: 0.8,
    charges: 0.8,
    audit: 0.8,
    renewals: 0.8,
  };
  const rates = entries.flatMap((e: ChartEntry) => [
    { entry: e.name, series: '1 product', perSecond: e.perSecond },
    { entry: e.name, series: '2 data-bound baseline', perSecond: e.baselines.dataBound.perSecond },
    {
      entry: e.name,
      series: '3 limit (bare route / no-op jobs / bare render)',
      perSecond: e.baselines.limit.perSecond,
    },
  ]);
  const ratios = entries.map((e: ChartEntry) => ({
    entry: e.name,
    ratio: e.ratioToDataBound,
    target: TARGETS[e.name] ?? null,
    cpu: `${e.cpuMsPerOp} ms CPU/op`,
  }));

  const order = entries.map((e: ChartEntry) => e.name);
  // Room above the tallest bar (an entry faster than its replay) for its label.
  const ratioCeiling = Math.max(1.2, Math.ceil(Math.max(...ratios.map((r) => r.ratio)) * 5 + 1) / 5);
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'hipaa-billing bench (one run, same machine, baselines from the same run)', anchor: 'start' },
    config: { font: 'sans-serif', view: { stroke: null } },
    vconcat: [
      {
        width: 520,
        height: 220,
        data: { values: rates },
        mark: { type: 'bar', tooltip: true },
        encoding: {
          x: { field: 'entry', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30 } },
          xOffset: { field: 'series', type: 'nominal' },
          y: {
            field: 'perSecond',
            type: 'quantitative',
            // An explicit domain: without one, vega draws no ticks on this log axis when rendered headless.
            scale: { type: 'log', domain: [1, 100000] },
            title: 'operations per second (log)',
            axis: { values: [1, 10, 100, 1000, 10000, 100000], format: ',' },
          },
          // Bars from 1, the scale's floor: a log scale has no 0 for them to start at (they would not be drawn).
          y2: { datum: 1 },
          color: {
            field: 'series',
            type: 'nominal',
            title: null,
            legend: { orient: 'top', labelLimit: 400, labelExpr: 'slice(datum.label, 2)' },
            scale: { range: ['#4c78a8', '#f58518', '#bab0ac'] },
          },
        },
      },
      {
        width: 520,
        height: 160,
        data: { values: ratios },
        layer: [
          {
            mark: { type: 'bar', color: '#4c78a8' },
            encoding: {
              x: { field: 'entry', type: 'nominal', sort: order, title: null, axis: { labelAngle: -30 } },
              y: {
                field: 'ratio',
                type: 'quantitative',
                title: 'product / data-bound',
                scale: { domain: [0, ratioCeiling] },
              },
            },
          },
          {
            mark: { type: 'tick', color: '#e45756', thickness: 2, size: 40 },
            encoding: {
              x: { field: 'entry', type: 'nominal', sort: order },
              y: { field: 'target', type: 'quantitative' },
            },
          },
          {
            mark: { type: 'text', dy: -8, fontSize: 10 },
            encoding: {
              x: { field: 'entry', type: 'nominal', sort: order },
              y: { field: 'ratio', type: 'quantitative' },
              text: { field: 'ratio', type: 'quantitative', format: '.2f' },
            },
          },
        ],
      },
    ],
  };

  return spec;
}

async function main([input, output]: string[]): Promise<void> {
  if (!input || !output) throw new Error('usage: node dist/bench/chart.js RESULTS.json OUT.svg');
  const { entries } = JSON.parse(readFileSync(input, 'utf8')) as { entries?: ChartEntry[] };
  if (!Array.isArray(entries) || entries.length === 0) throw new Error(`${input} has no entries`);
  const vl = (await importEsm('vega-lite')) as VegaLite;
  const vega = (await importEsm('vega')) as Vega;
  const view = new vega.View(vega.parse(vl.compile(chartSpec(entries)).spec), { renderer: 'none' });
  writeFileSync(output, await view.toSVG());
  view.finalize();
  process.stderr.write(`wrote ${output} (${entries.length} entries; red ticks: targets)\n`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`chart: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  });
}
