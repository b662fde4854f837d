import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump, loadAll } from 'js-yaml';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { freePort } from '../../devtools/ports';
import { assertBuildIsCurrent } from '../support/processes';

/**
 * The api and a worker group started exactly as the Helm chart's pods start them: the command and the environment
 * of the rendered Deployments (default values), the Secret's keys filled in, the mounted key files at local paths.
 * What the probes ask must answer, and SIGTERM must end each process cleanly within the pod's grace period.
 */

const ROOT = join(__dirname, '../..');
const CHART = join(ROOT, 'deploy/helm/hipaa-billing');
const HELM = join(process.env.SERVICES_BIN_DIR ?? join(homedir(), '.cache/hipaa-billing/bin'), 'helm');

type Container = {
  command: string[];
  env: Array<{ name: string; value?: string }>;
  readinessProbe: { httpGet?: { path: string }; tcpSocket?: { port: string } };
  livenessProbe: { httpGet?: { path: string }; tcpSocket?: { port: string } };
};
type Deployment = {
  kind: string;
  metadata: { name: string };
  spec: { template: { spec: { containers: Container[]; terminationGracePeriodSeconds: number } } };
};

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.end();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });

const helmBuilt = existsSync(HELM);
(helmBuilt ? describe : describe.skip)(
  helmBuilt
    ? "the chart's pods, as processes"
    : `the chart's pods, as processes (SKIPPED: Helm is not built at ${HELM}; \`npm run helm:check\` builds it)`,
  () => {
    let context: TestContext;
    let keyDir: string;
    const children: ChildProcess[] = [];

    beforeAll(async () => {
      assertBuildIsCurrent();
      context = await createTestContext('helm_pods');
      keyDir = mkdtempSync(join(tmpdir(), 'hb-helm-'));
    });
    afterAll(async () => {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await context?.close();
      rmSync(keyDir, { recursive: true, force: true });
    });

    it('start with the rendered command and environment, answer their probes, and stop cleanly on SIGTERM', async () => {
      const [apiPort, workersMetricsPort, apiMetricsPort] = [await freePort(), await freePort(), await freePort()];
      const values = join(keyDir, 'values.yaml');
      writeFileSync(
        values,
        dump({
          env: { QUEUE_PREFIX: context.env.QUEUE_PREFIX, KEY_VAULT_NAMESPACE: context.env.KEY_VAULT_NAMESPACE },
          api: { port: apiPort },
          metrics: { port: workersMetricsPort },
        }),
      );
      const rendered = spawnSync(HELM, ['template', 'hb', CHART, '--values', values], { encoding: 'utf8' });
      expect(rendered.stderr).toBe('');
      const deployments = (loadAll(rendered.stdout) as Array<Deployment | null>).filter(
        (doc): doc is Deployment => doc?.kind === 'Deployment',
      );

      // The key files the pods get from Secrets, here as local files.
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      writeFileSync(join(keyDir, 'private.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
      writeFileSync(join(keyDir, 'public.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
      const mounted: Record<string, string> = {
        '/etc/hipaa-billing/kms/master-key': context.env.LOCAL_MASTER_KEY_FILE!,
        '/etc/hipaa-billing/audit-anchor/private.pem': join(keyDir, 'private.pem'),
        '/etc/hipaa-billing/audit-anchor/public.pem': join(keyDir, 'public.pem'),
      };
      // The keys of the hipaa-billing-env Secret (envFrom).
      const metricsToken = randomBytes(24).toString('hex');
      const secretEnv = {
        REDIS_URL: context.env.REDIS_URL!,
        MONGODB_URI: context.env.MONGODB_URI!,
        STRIPE_API_BASE: context.env.STRIPE_API_BASE!,
        AUTH_JWT_SECRET: randomBytes(32).toString('hex'),
        METRICS_BEARER_TOKEN: metricsToken,
        API_CONTRACT_CHECK: 'true',
      };

      const start = (name: string, overrides: Record<string, string> = {}) => {
        const deployment = deployments.find((d) => d.metadata.name === name)!;
        const [container] = deployment.spec.template.spec.containers;
        const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...secretEnv };
        for (const entry of container!.env) {
          if (entry.value !== undefined) env[entry.name] = mounted[entry.value] ?? entry.value;
        }
        const [program, ...args] = container!.command;
        expect(program).toBe('node');
        const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...env, ...overrides }, stdio: 'ignore' });
        children.push(child);
        const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
        return {
          child,
          container: container!,
          exited,
          grace: deployment.spec.template.spec.terminationGracePeriodSeconds,
        };
      };

      // One host here, a pod each in Kubernetes: the api's metrics move aside.
      const api = start('hb-hipaa-billing-api', { METRICS_PORT: String(apiMetricsPort) });
      const workers = start('hb-hipaa-billing-workers-audit');
      expect(workers.container.command.slice(-2)).toEqual(['--queues', 'audit,maintenance']);

      const get = (path: string) => fetch(`http://127.0.0.1:${apiPort}${path}`).catch(() => undefined);
      for (const probe of [api.container.livenessProbe, api.container.readinessProbe]) {
        const answer = await waitFor(
          () => get(probe.httpGet!.path),
          (response) => response?.status === 200,
          { timeoutMs: 60_000, what: `the api's ${probe.httpGet!.path}` },
        );
        expect(answer?.status).toBe(200);
      }
      expect(workers.container.livenessProbe.tcpSocket).toEqual({ port: 'metrics' });
      await waitFor(
        () => accepts(workersMetricsPort),
        (ok) => ok,
        { timeoutMs: 60_000, what: "the workers' metrics listener (their probes)" },
      );
      const metrics = `http://127.0.0.1:${workersMetricsPort}/metrics`;
      expect((await fetch(metrics)).status).toBe(401);
      const scraped = await fetch(metrics, { headers: { authorization: `Bearer ${metricsToken}` } });
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('hipaa_billing_job_duration_seconds');

      for (const running of [api, workers]) {
        const startedAt = Date.now();
        running.child.kill('SIGTERM');
        expect(await running.exited).toBe(0);
        expect(Date.now() - startedAt).toBeLessThan(running.grace * 1000);
      }
    }, 120_000);
  },
);
