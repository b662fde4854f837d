import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { registerOperationalGauges } from '../../application/ops/operational-gauges';
import { registry } from '../../platform/metrics';

/** docs/grafana-dashboard.json only asks for metrics the processes serve, so it loads and shows data as it is. */
describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(join(__dirname, '../../docs/grafana-dashboard.json'), 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    templating: { list: Array<{ name: string; type: string }> };
  };

  it('queries only metrics the api and workers export', () => {
    // The gauges are registered with their readers; nothing is read here.
    registerOperationalGauges({ queues: {} as never, models: {} as never });
    const served = new Set(registry.getMetricsAsArray().map((metric) => (metric as unknown as { name: string }).name));
    const asked = dashboard.panels.flatMap((panel) =>
      panel.targets.flatMap((target) =>
        [...target.expr.matchAll(/hipaa_billing_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')),
      ),
    );
    expect(asked.length).toBeGreaterThan(10);
    expect(asked.filter((name) => !served.has(name))).toEqual([]);
  });

  it('has a panel per concern and a Prometheus data source to pick', () => {
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: 'datasource', type: 'datasource' }),
    );
    const titles = dashboard.panels.map((panel) => panel.title).join('\n');
    for (const concern of ['latency', 'Jobs', 'failures', 'Audit backlog', 'Renewals due', 'dunning', 'attention']) {
      expect(titles).toContain(concern);
    }
  });
});
