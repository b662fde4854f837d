import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump, load, loadAll } from 'js-yaml';
import { ConfigError, loadConfig } from '../../platform/config';
import { ALL_QUEUE_NAMES } from '../../queues/names';

/**
 * The Helm chart (deploy/helm/hipaa-billing) rendered by the real Helm with its default values and with
 * values-production.yaml, and the manifests checked for what an operator relies on: hardened pods, no secret in a
 * manifest, probes, shutdown time, one Deployment per queue group, disruption budgets, network policies, scaling.
 * `npm test` and CI build Helm first (scripts/lib.sh, HELM_VERSION); without it these tests fail and say how to build it.
 */

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'deploy/helm/hipaa-billing');
const PRODUCTION_VALUES = join(CHART, 'values-production.yaml');
const HELM = join(process.env.SERVICES_BIN_DIR ?? join(homedir(), '.cache/hipaa-billing/bin'), 'helm');

/** Settings that are secrets: they may reach a container only from a Secret. */
const SECRET_SETTINGS = [
  'REDIS_URL',
  'MONGODB_URI',
  'AUTH_JWT_SECRET',
  'AUTH_JWKS_URL',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'GCP_PRIVATE_KEY',
  'AZURE_CLIENT_SECRET',
  'METRICS_BEARER_TOKEN',
];
/** What a secret's value looks like, wherever it would appear in a manifest. */
const SECRET_LOOKING = [/mongodb(\+srv)?:\/\//, /rediss?:\/\//, /-----BEGIN/, /\bsk_(live|test)_/, /\bwhsec_/];

type Manifest = { apiVersion: string; kind: string; metadata: { name: string; labels?: Record<string, string> } } & {
  spec?: any;
  data?: Record<string, string>;
};
type Container = {
  name: string;
  command: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  envFrom?: Array<{ secretRef?: { name: string }; configMapRef?: unknown }>;
  ports?: Array<{ name: string; containerPort: number }>;
  securityContext?: any;
  readinessProbe?: any;
  livenessProbe?: any;
  startupProbe?: any;
  lifecycle?: any;
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
};
type Group = { name: string; queues: string[]; keda?: { enabled: boolean } };

function helm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(HELM, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** `helm template` with these values files; the ServiceMonitor's API announced unless `withoutOperator`. */
function template(valuesFiles: string[], options: { withoutOperator?: boolean } = {}) {
  return helm([
    'template',
    'hb',
    CHART,
    '--namespace',
    'billing',
    ...(options.withoutOperator ? [] : ['--api-versions', 'monitoring.coreos.com/v1/ServiceMonitor']),
    ...valuesFiles.flatMap((file) => ['--values', file]),
  ]);
}

function render(valuesFiles: string[], options: { withoutOperator?: boolean } = {}): Manifest[] {
  const result = template(valuesFiles, options);
  if (result.status !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  return (loadAll(result.stdout) as Array<Manifest | null>).filter((doc): doc is Manifest => doc !== null);
}

const scratch = mkdtempSync(join(tmpdir(), 'helm-chart-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let files = 0;
function valuesFile(values: unknown): string {
  const file = join(scratch, `values-${(files += 1)}.yaml`);
  writeFileSync(file, dump(values));
  return file;
}

const of = (manifests: Manifest[], kind: string) => manifests.filter((m) => m.kind === kind);
const containersOf = (deployment: Manifest): Container[] => [
  ...((deployment.spec.template.spec.initContainers ?? []) as Container[]),
  ...(deployment.spec.template.spec.containers as Container[]),
];
const envOf = (container: Container, name: string) => container.env?.find((entry) => entry.name === name)?.value;
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([key, value]) => labels[key] === value);

if (!existsSync(HELM)) {
  throw new Error(`Helm is not built at ${HELM}: \`npm test\` and \`npm run helm:check\` build it (scripts/lib.sh)`);
}

describe.each([
  ['default values', [] as string[]],
  ['values-production.yaml', [PRODUCTION_VALUES]],
])('the Helm chart with %s', (_label, valuesFiles) => {
  const manifests = render(valuesFiles);
  const defaults = load(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { workers: { groups: Group[] } };
  const overrides = valuesFiles.map((file) => load(readFileSync(file, 'utf8')) as { workers?: { groups?: Group[] } });
  const groups: Group[] = overrides.reduce((found, values) => values.workers?.groups ?? found, defaults.workers.groups);
  const deployments = of(manifests, 'Deployment');
  const api = deployments.find((d) => d.metadata.name === 'hb-hipaa-billing-api')!;
  const workerDeployments = deployments.filter((d) => d !== api);
  const podLabels = (d: Manifest) => d.spec.template.metadata.labels as Record<string, string>;

  it('runs every container as non-root with a read-only root filesystem, no capabilities and RuntimeDefault seccomp', () => {
    expect(deployments.length).toBe(1 + groups.length);
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      expect(pod.automountServiceAccountToken).toBe(false);
      expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
      expect(pod.securityContext.runAsUser).not.toBe(0);
      for (const container of containersOf(deployment)) {
        expect(container.securityContext).toMatchObject({
          runAsNonRoot: true,
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
        });
        expect(container.securityContext.privileged ?? false).toBe(false);
        expect(container.securityContext.capabilities.add ?? []).toEqual([]);
        // The one writable place: /tmp on an emptyDir.
        expect(container.volumeMounts?.filter((m) => !m.readOnly).map((m) => m.mountPath)).toEqual(['/tmp']);
      }
    }
  });

  it('puts no secret in any manifest: secrets reach the processes only from Secrets the chart names', () => {
    expect(of(manifests, 'Secret')).toEqual([]);
    const text = dump(manifests);
    for (const pattern of SECRET_LOOKING) expect(text).not.toMatch(pattern);
    for (const deployment of deployments) {
      for (const container of containersOf(deployment)) {
        expect(container.envFrom?.map((source) => source.secretRef?.name)).toEqual(['hipaa-billing-env']);
        for (const entry of container.env ?? []) {
          if (SECRET_SETTINGS.includes(entry.name)) {
            expect(entry.value).toBeUndefined();
            expect(entry.valueFrom?.secretKeyRef).toBeDefined();
          }
        }
      }
      // Key files are mounted from Secrets, read-only.
      const secretVolumes = (deployment.spec.template.spec.volumes as Array<{ name: string; secret?: object }>).filter(
        (volume) => volume.secret,
      );
      expect(secretVolumes.map((volume) => volume.name)).toContain('audit-anchor');
    }
  });

  it('gives the anchor signing key only to the group serving maintenance; the api and the others get the public key', () => {
    for (const deployment of deployments) {
      const [container] = deployment.spec.template.spec.containers as Container[];
      const signs = deployment !== api && container!.command.at(-1)!.split(',').includes('maintenance');
      expect(Boolean(envOf(container!, 'AUDIT_ANCHOR_KEY_FILE'))).toBe(signs);
      expect(Boolean(envOf(container!, 'AUDIT_ANCHOR_PUBLIC_KEY_FILE'))).toBe(!signs);
      const anchor = (deployment.spec.template.spec.volumes as Array<{ name: string; secret?: any }>).find(
        (volume) => volume.name === 'audit-anchor',
      );
      expect(anchor!.secret.items.map((item: { path: string }) => item.path)).toEqual([
        signs ? 'private.pem' : 'public.pem',
      ]);
    }
  });

  it('probes the api on /readyz and /healthz at its own port, and the workers on their metrics listener', () => {
    const [container] = api.spec.template.spec.containers as Container[];
    const port = container!.ports!.find((p) => p.name === 'http')!;
    expect(String(port.containerPort)).toBe(envOf(container!, 'PORT'));
    expect(envOf(container!, 'HOST')).toBe('0.0.0.0');
    const scheme = envOf(container!, 'TLS_CERT_FILE') ? 'HTTPS' : 'HTTP';
    expect(container!.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http', scheme });
    expect(container!.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http', scheme });
    expect(container!.startupProbe.httpGet.path).toBe('/healthz');
    for (const deployment of workerDeployments) {
      const [worker] = deployment.spec.template.spec.containers as Container[];
      for (const probe of [worker!.readinessProbe, worker!.livenessProbe, worker!.startupProbe]) {
        expect(probe.tcpSocket).toEqual({ port: 'metrics' });
      }
      expect(String(worker!.ports!.find((p) => p.name === 'metrics')!.containerPort)).toBe(
        envOf(worker!, 'METRICS_PORT'),
      );
    }
  });

  it('lets every process finish within its own shutdown deadline before Kubernetes kills it', () => {
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      for (const container of pod.containers as Container[]) {
        const deadlineSeconds = Number(envOf(container, 'SHUTDOWN_DEADLINE_MS')) / 1000;
        expect(deadlineSeconds).toBeGreaterThan(0);
        const preStopSeconds = Number(container.lifecycle?.preStop?.sleep?.seconds ?? 0);
        expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(deadlineSeconds + preStopSeconds);
      }
    }
  });

  it('runs one worker Deployment per queue group with its --queues, and every queue is served', () => {
    expect(workerDeployments.map((d) => d.metadata.name).sort()).toEqual(
      groups.map((g) => `hb-hipaa-billing-workers-${g.name}`).sort(),
    );
    for (const group of groups) {
      const deployment = workerDeployments.find((d) => d.metadata.name === `hb-hipaa-billing-workers-${group.name}`)!;
      const [container] = deployment.spec.template.spec.containers as Container[];
      expect(container!.command).toEqual(['node', 'dist/workers/main.js', '--queues', group.queues.join(',')]);
    }
    expect([...new Set(groups.flatMap((g) => g.queues))].sort()).toEqual([...ALL_QUEUE_NAMES].sort());
    const [apiContainer] = api.spec.template.spec.containers as Container[];
    expect(apiContainer!.command).toEqual(['node', 'dist/api/main.js']);
  });

  it('has a PodDisruptionBudget for the api and for every worker group', () => {
    const budgets = of(manifests, 'PodDisruptionBudget');
    for (const deployment of deployments) {
      const covering = budgets.filter((b) => matches(b.spec.selector.matchLabels, podLabels(deployment)));
      expect(covering).toHaveLength(1);
      expect(covering[0]!.spec.maxUnavailable).toBeDefined();
    }
  });

  it('admits the api port from anywhere, the metrics port only from the monitoring namespace, nothing else', () => {
    const policies = of(manifests, 'NetworkPolicy');
    for (const deployment of deployments) {
      const rules = policies
        .filter((p) => matches(p.spec.podSelector.matchLabels, podLabels(deployment)))
        .flatMap((p) => {
          expect(p.spec.policyTypes).toContain('Ingress');
          return p.spec.ingress as Array<{ from?: any[]; ports: Array<{ port: string }> }>;
        });
      expect(rules.length).toBeGreaterThan(0);
      for (const rule of rules) {
        expect(rule.ports.length).toBeGreaterThan(0);
        for (const { port } of rule.ports) {
          if (port === 'metrics') {
            expect(rule.from?.length).toBeGreaterThan(0);
            for (const peer of rule.from!) {
              expect(peer.ipBlock).toBeUndefined();
              expect(peer.namespaceSelector).toEqual({
                matchLabels: { 'kubernetes.io/metadata.name': 'monitoring' },
              });
            }
          } else {
            // Only the api's own port is open to anyone, and only on the api.
            expect(deployment).toBe(api);
            expect(port).toBe('http');
          }
        }
      }
    }
  });

  it('scales the api with an HPA, and each worker group with an HPA on CPU or, where enabled, a KEDA ScaledObject on its queues', () => {
    const hpas = of(manifests, 'HorizontalPodAutoscaler');
    const scaledObjects = of(manifests, 'ScaledObject');
    const target = (name: string) => (m: Manifest) => m.spec.scaleTargetRef.name === name;
    expect(hpas.filter(target(api.metadata.name))).toHaveLength(1);
    for (const group of groups) {
      const name = `hb-hipaa-billing-workers-${group.name}`;
      const scaled = scaledObjects.filter(target(name));
      if (group.keda?.enabled) {
        // KEDA owns the group's HPA: a second one of ours would fight it.
        expect(hpas.filter(target(name))).toHaveLength(0);
        expect(scaled).toHaveLength(1);
        const triggers = scaled[0]!.spec.triggers as Array<{ type: string; metadata: Record<string, string> }>;
        expect(triggers.filter((t) => t.type === 'redis').map((t) => t.metadata.listName)).toEqual(
          group.queues.map((queue) => `{hb}:${queue}:wait`),
        );
        expect(triggers.some((t) => t.type === 'cpu')).toBe(true);
      } else {
        expect(scaled).toHaveLength(0);
        const [hpa] = hpas.filter(target(name));
        expect(hpa!.spec.metrics[0].resource.name).toBe('cpu');
      }
    }
    const kedaOn = groups.some((g) => g.keda?.enabled);
    expect(of(manifests, 'TriggerAuthentication')).toHaveLength(kedaOn ? 1 : 0);
  });

  it('scrapes metrics with a ServiceMonitor (bearer token from the Secret) and ships the Grafana dashboard', () => {
    const [monitor] = of(manifests, 'ServiceMonitor');
    expect(monitor!.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(monitor!.spec.endpoints[0].authorization.credentials).toEqual({
      name: 'hipaa-billing-env',
      key: 'METRICS_BEARER_TOKEN',
    });
    // One Service over every pod's metrics port, and the ServiceMonitor selects it.
    const metricsServices = of(manifests, 'Service').filter((service) =>
      deployments.every((deployment) => matches(service.spec.selector, podLabels(deployment))),
    );
    expect(metricsServices).toHaveLength(1);
    expect(metricsServices[0]!.spec.ports.map((port: { targetPort: string }) => port.targetPort)).toEqual(['metrics']);
    expect(matches(monitor!.spec.selector.matchLabels, metricsServices[0]!.metadata.labels!)).toBe(true);

    const [dashboard] = of(manifests, 'ConfigMap').filter((m) => m.metadata.labels?.grafana_dashboard === '1');
    const docs = JSON.parse(readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as unknown;
    expect(JSON.parse(dashboard!.data!['hipaa-billing.json']!)).toEqual(docs);
  });

  it('gives every process a configuration the application itself accepts', () => {
    // The Secret's keys as an operator would fill them in (docs/deploy.md), for the app's own validation.
    const production = valuesFiles.length > 0;
    const secretEnv: Record<string, string> = production
      ? {
          REDIS_URL: 'rediss://default:password@redis.example.com:6380',
          MONGODB_URI: 'mongodb+srv://billing:password@cluster0.example.mongodb.net/hipaa_billing?w=majority',
          AUTH_JWKS_URL: 'https://auth.example.com/.well-known/jwks.json',
          METRICS_BEARER_TOKEN: 'a-metrics-bearer-token-of-32-characters-or-more',
        }
      : {
          REDIS_URL: 'redis://redis:6379',
          MONGODB_URI: 'mongodb://mongo:27017/hipaa_billing?replicaSet=rs0',
          AUTH_JWT_SECRET: 'a-staging-token-secret-of-32-characters-or-more',
          METRICS_BEARER_TOKEN: 'a-metrics-bearer-token-of-32-characters-or-more',
        };
    for (const deployment of deployments) {
      for (const container of deployment.spec.template.spec.containers as Container[]) {
        const env: NodeJS.ProcessEnv = { ...secretEnv };
        for (const entry of container.env ?? []) if (entry.value !== undefined) env[entry.name] = entry.value;
        let problems: string[] = [];
        try {
          loadConfig(env, (path) => `contents of ${path}`);
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
          problems = error.problems;
        }
        expect({ deployment: deployment.metadata.name, problems }).toEqual({
          deployment: deployment.metadata.name,
          problems: [],
        });
      }
    }
  });
});

describe('the Helm chart refuses bad values', () => {
  const bad = (values: unknown) => template([valuesFile(values)]);

  it('refuses a replica count that is not a number (values.schema.json)', () => {
    const result = bad({ api: { replicas: 'three' } });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/replicas/);
  });

  it('refuses a secret written into the plain environment', () => {
    const result = bad({ env: { MONGODB_URI: 'mongodb://user:password@db/hipaa_billing' } });
    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain('/env/MONGODB_URI');
  });

  it('refuses an unknown queue name and a set of groups that leaves a queue unserved', () => {
    const defaults = load(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { workers: { groups: Group[] } };
    const typo = defaults.workers.groups.map((g) => (g.name === 'invoices' ? { ...g, queues: ['invoice'] } : g));
    expect(bad({ workers: { groups: typo } }).status).not.toBe(0);
    const unserved = bad({ workers: { groups: defaults.workers.groups.filter((g) => g.name !== 'invoices') } });
    expect(unserved.status).not.toBe(0);
    expect(unserved.stderr).toContain('no group serves the invoices queue');
  });

  it('refuses to open metrics to every namespace (an empty or removed monitoring namespace selector)', () => {
    // Helm merges maps with the defaults: null is how a values file removes a key.
    expect(bad({ metrics: { monitoringNamespaceSelector: { matchLabels: null } } }).status).not.toBe(0);
    expect(bad({ metrics: { monitoringNamespaceSelector: null } }).status).not.toBe(0);
  });

  it('knows every queue of queues/names.ts', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
    expect(schema.properties.workers.properties.groups.items.properties.queues.items.enum).toEqual([
      ...ALL_QUEUE_NAMES,
    ]);
  });

  it('renders no ServiceMonitor where the Prometheus Operator is absent, and no KEDA objects unless enabled', () => {
    const manifests = render([], { withoutOperator: true });
    expect(of(manifests, 'ServiceMonitor')).toEqual([]);
    expect(of(manifests, 'ScaledObject')).toEqual([]);
    expect(of(manifests, 'Deployment').length).toBeGreaterThan(1);
  });
});

describe("the chart's copy of the Grafana dashboard", () => {
  it('equals docs/grafana-dashboard.json (Helm cannot read outside the chart)', () => {
    expect(readFileSync(join(CHART, 'dashboards/grafana-dashboard.json'), 'utf8')).toBe(
      readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8'),
    );
  });
});
