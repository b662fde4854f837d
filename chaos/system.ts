import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { withDatabaseName } from '../devtools/services';
import { startStripeSim, type StripeSim } from '../devtools/stripe-sim';
import { mintDevToken } from '../devtools/tokens';
import { openDatabase, type Database } from '../models';
import { createCompany } from '../models/companies';
import { loadConfig, type AppConfig } from '../platform/config';
import { closeQueues, createQueues, type Queues } from '../queues';
import { ChaosDatabase } from './database';
import { ChaosProcess, nodeEntry } from './processes';
import { startStripeProxy, type StripeProxy } from './stripe-proxy';
import { freePort } from '../devtools/ports';
import { WebhookReceiver } from './webhook-receiver';

export const WEBHOOK_SECRET = 'whsec_ChaosSuiteSigning000001';
/** A dunning policy short enough to reach its end on a test clock within a run. */
export const DUNNING = { retryDelaysDays: [1, 3], finalState: 'unpaid' as const };
/** The system's wait for a webhook receiver's answer; the receiver's hangs last longer. */
const WEBHOOK_TIMEOUT_MS = 3_000;

export interface SystemOptions {
  workers: number;
  apis: number;
  /** stripe-mock, behind stripe-sim (the MongoDB-wire server is the run's own: chaos/database.ts). */
  stripeMockUrl: string;
  random: () => number;
  log: (line: string) => void;
}

/**
 * The system under test as real processes: `apis` api processes and `workers` worker processes from dist/, a Redis
 * of the run's own (AOF on; restarting or pausing it disturbs nobody else), a FerretDB of the run's own (killing and
 * restarting it disturbs nobody else), and stripe-sim (in this process) behind a recording proxy that injects Stripe
 * faults.
 */
export class ChaosSystem {
  readonly apis: ChaosProcess[] = [];
  readonly workers: ChaosProcess[] = [];
  redisServer!: ChaosProcess;
  database!: ChaosDatabase;
  config!: AppConfig;
  db!: Database;
  redis!: Redis;
  queues!: Queues;
  sim!: StripeSim;
  proxy!: StripeProxy;
  receiver!: WebhookReceiver;
  /** The outgoing webhook endpoint registered for the receiver. */
  webhookEndpointId = '';
  companyId = '';
  apiUrls: string[] = [];
  private token = { value: '', at: 0 };
  private env: Record<string, string> = {};
  private dir = '';
  private dbName = '';

  constructor(readonly options: SystemOptions) {}

  async start(): Promise<void> {
    const { options } = this;
    this.dir = mkdtempSync(join(tmpdir(), 'hb-chaos-'));
    const redisPort = await freePort();
    this.redisServer = new ChaosProcess(
      'redis',
      'redis-server',
      [
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--save',
        '',
        '--dir',
        this.dir,
        // BullMQ's requirement: never evict its keys.
        '--maxmemory-policy',
        'noeviction',
      ],
      {},
      /Ready to accept connections/,
    );
    await this.redisServer.start();
    const suffix = randomBytes(5).toString('hex');
    this.database = new ChaosDatabase(this.dir);
    await this.database.start(suffix);

    this.sim = await startStripeSim({ upstreamUrl: options.stripeMockUrl });
    this.proxy = await startStripeProxy(this.sim.url, options.random);
    this.receiver = new WebhookReceiver(options.random, WEBHOOK_TIMEOUT_MS + 2_000);
    await this.receiver.start();

    const keyFile = join(this.dir, 'master.key');
    writeFileSync(keyFile, randomBytes(96), { mode: 0o600 });
    this.dbName = `hbchaos_${suffix}`;
    this.env = {
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      REDIS_URL: `redis://127.0.0.1:${redisPort}`,
      MONGODB_URI: withDatabaseName(this.database.uri, this.dbName),
      STRIPE_API_BASE: this.proxy.url,
      // Below the slow fault's delay: a slow Stripe is a timeout, whose outcome the system does not know.
      STRIPE_TIMEOUT_MS: '3000',
      QUEUE_PREFIX: `{hbchaos-${suffix}}`,
      KEY_VAULT_NAMESPACE: `hbkv_${suffix}.__keyVault`,
      LOCAL_MASTER_KEY_FILE: keyFile,
      AUDIT_ANCHOR_KEY_FILE: join(this.dir, 'anchor-ed25519.pem'),
      METRICS_PORT: '0',
      API_CONTRACT_CHECK: 'true',
      // The sweeps that find work a killed process left: often, so a run's drain is short.
      OUTBOX_SWEEP_EVERY_MS: '2000',
      OUTBOX_STALE_AFTER_MS: '5000',
      RECONCILE_AFTER_MS: '10000',
      RECONCILE_EVERY_MS: '5000',
      SHUTDOWN_DEADLINE_MS: '5000',
      // Outgoing webhooks: retries seconds apart (not hours), so a run's deliveries finish within its drain; a
      // delivery whose worker was killed is sent again within about 20 s.
      WEBHOOK_RETRY_SCHEDULE_MS: '1000,2000,4000,8000,15000,30000,60000',
      WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
      WEBHOOK_STALLED_CHECK_MS: '10000',
      WEBHOOK_ENDPOINT_CACHE_MS: '1000',
      // One company drives the whole workload: far above its default rate limits.
      RATE_LIMIT_PER_MINUTE: '1000000',
      RATE_LIMIT_PER_SOURCE_PER_MINUTE: '1000000',
    };
    this.config = loadConfig(this.env);
    this.db = await openDatabase(this.config);
    this.redis = new Redis(this.config.redisUrl, { maxRetriesPerRequest: null });
    // Redis goes away on purpose here: the suite's own connections reconnect quietly.
    this.redis.on('error', () => undefined);
    this.queues = createQueues(this.redis, this.config.queuePrefix);
    for (const queue of Object.values(this.queues)) queue.on('error', () => undefined);

    for (let i = 0; i < options.apis; i += 1) {
      const port = await freePort();
      this.apiUrls.push(`http://127.0.0.1:${port}`);
      this.apis.push(nodeEntry(`api-${i + 1}`, 'api/main.js', { ...this.env, PORT: String(port) }, /api listening/));
    }
    for (let i = 0; i < options.workers; i += 1) {
      this.workers.push(nodeEntry(`workers-${i + 1}`, 'workers/main.js', this.env, /workers started/));
    }
    await Promise.all([...this.apis, ...this.workers].map((p) => p.start()));

    this.companyId = await createCompany(this.db, { name: 'Chaos Family Practice' });
    await this.configureCompany();
    await this.registerWebhookEndpoint();
  }

  /** The receiver as the company's endpoint for every event type; its secret (shown once) goes to the receiver. */
  private async registerWebhookEndpoint(): Promise<void> {
    const response = await fetch(`${this.apiUrls[0]}/v1/companies/${this.companyId}/webhook-endpoints`, {
      method: 'POST',
      headers: { authorization: `Bearer ${await this.bearer()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ url: this.receiver.url, enabledEvents: ['*'], description: 'chaos suite receiver' }),
    });
    const body = (await response.json()) as { id?: string; secret?: string };
    if (response.status !== 201 || !body.secret || !body.id) {
      throw new Error(`registering the webhook endpoint: ${response.status} ${JSON.stringify(body)}`);
    }
    this.webhookEndpointId = body.id;
    this.receiver.useSecret(body.secret);
  }

  private async configureCompany(): Promise<void> {
    // Retried through 5xx for three minutes: on a saturated machine (load 15+) a just-started api may not queue an audit event in time.
    const must = async (method: string, path: string, body: unknown): Promise<void> => {
      const giveUpAt = Date.now() + 180_000;
      for (;;) {
        const response = await fetch(`${this.apiUrls[0]}/v1/companies/${this.companyId}${path}`, {
          method,
          headers: { authorization: `Bearer ${await this.bearer()}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        if (response.status < 300) return;
        const text = await response.text();
        if (response.status < 500 || Date.now() > giveUpAt)
          throw new Error(
            `${method} ${path}: ${response.status} ${text}\napi-1's last lines:\n${this.apis[0]!.tail(15)}`,
          );
        await sleep(500);
      }
    };
    await must('PUT', '/payment-config', {
      mode: 'company',
      credentials: { secretKey: 'sk_test_51ChaosSuiteAccount0', webhookSigningSecrets: [WEBHOOK_SECRET] },
    });
    await must('POST', '/payment-config/attestation', {
      status: 'exempt_1179',
      rationale: 'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).',
    });
    await must('PUT', '/billing-settings', { timeZone: 'UTC', dunning: DUNNING });
  }

  /** A company admin's token, minted again every few minutes (the api refuses tokens older than 15). */
  async bearer(): Promise<string> {
    if (Date.now() - this.token.at > 5 * 60_000) {
      const value = await mintDevToken(this.config, {
        companyId: this.companyId,
        roles: ['company_admin'],
        subject: 'usr-chaos-admin',
      });
      this.token = { value, at: Date.now() };
    }
    return this.token.value;
  }

  /** SIGKILL, then (after `downMs`) the same process started again; resolves once it is ready. */
  async crashAndRestart(process: ChaosProcess, downMs: number): Promise<void> {
    await process.kill();
    await sleep(downMs);
    await process.start();
  }

  async restartRedis(downMs: number): Promise<void> {
    await this.crashAndRestart(this.redisServer, downMs);
  }

  async restartDatabase(downMs: number): Promise<void> {
    await this.database.crashAndRestart(downMs);
  }

  async pauseRedis(ms: number): Promise<void> {
    this.redisServer.signal('SIGSTOP');
    await sleep(ms);
    this.redisServer.signal('SIGCONT');
  }

  /** One of the suite's own reads or writes, retried for up to a minute: the database may be down (a fault). */
  async withDatabase<T>(operation: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + 60_000;
    for (;;) {
      try {
        return await operation();
      } catch (error) {
        if (Date.now() > giveUpAt) throw error;
        await sleep(500);
      }
    }
  }

  /** Every api answers /readyz 200 (Redis and MongoDB answer it). */
  async ready(): Promise<boolean> {
    const answers = await Promise.all(
      this.apiUrls.map((url) =>
        fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2_000) })
          .then((r) => r.status === 200)
          .catch(() => false),
      ),
    );
    return answers.every(Boolean);
  }

  private stopped: Promise<void> | undefined;

  /** Removes everything the run started or made; once, however often it is called. */
  stop(): Promise<void> {
    this.stopped ??= this.stopOnce();
    return this.stopped;
  }

  private async stopOnce(): Promise<void> {
    this.redisServer?.signal('SIGCONT');
    await Promise.all([...this.apis, ...this.workers].map((p) => p.kill()));
    await this.proxy?.close();
    await this.receiver?.close();
    await this.sim?.close();
    if (this.queues) await closeQueues(this.queues).catch(() => undefined);
    this.redis?.disconnect();
    // The run's data goes with its FerretDB's PostgreSQL database (database.stop below).
    if (this.db) await this.db.close().catch(() => undefined);
    await this.redisServer?.kill();
    await this.database?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
