import { mkdtempSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { createCompany, devAttestation } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import {
  restartClusterNode,
  startLocalCluster,
  stopLocalCluster,
  type ClusterSettings,
  type LocalCluster,
} from './cluster-script';

/**
 * Charges on a Redis Cluster while the master that owns the deployment's hash slot (every queue key lives in it) is
 * killed with SIGKILL: its replica takes over after cluster-node-timeout, and whatever the dead master had not yet
 * replicated is gone. Nothing a payer was promised may be: every accepted payment ends succeeded exactly once, with
 * one PaymentIntent, one charge and its complete audit trail.
 *
 * A cluster of its own (ports REDIS_CLUSTER_FAILOVER_PORT.., 7110 by default), so the kill never disturbs the other
 * suites of the cluster pass.
 */
const settings: ClusterSettings = {
  port: Number(process.env.REDIS_CLUSTER_FAILOVER_PORT || 7110),
  dir: mkdtempSync(join(tmpdir(), 'hb-redis-failover-')),
  nodeTimeoutMs: 1_000,
};
const visa = { amount: 2_500, currency: 'usd', customer: 'cus_Failover0001', paymentMethod: 'pm_card_visa' };

let cluster: LocalCluster;
let system: InProcessSystem;
let companyId: string;
let token: string;

/** The port of the master serving `slot`, as a surviving node sees the cluster. */
async function ownerOf(slot: number, askPorts: number[]): Promise<number | undefined> {
  for (const port of askPorts) {
    const node = new Redis(port, '127.0.0.1', {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    try {
      await node.connect();
      const info = await node.cluster('INFO');
      if (!/cluster_state:ok/.test(info)) continue;
      const ranges = await node.cluster('SLOTS');
      return ranges.find(([from, to]) => slot >= from && slot <= to)?.[2]?.[1];
    } catch {
      // A node that does not answer (the dead one): ask the next.
    } finally {
      node.disconnect();
    }
  }
  return undefined;
}

/** POST a payment as a client does: the same Idempotency-Key again until it gets an answer it can keep (202). */
async function pay(key: string): Promise<string> {
  return waitFor(
    async () => {
      const response = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(visa),
      }).catch(() => undefined);
      if (response?.status !== 202) return undefined;
      return ((await response.json()) as { id: string }).id;
    },
    (id) => id !== undefined,
    { timeoutMs: 30_000, intervalMs: 200, what: `payment ${key} to be accepted` },
  ) as Promise<string>;
}

beforeAll(async () => {
  cluster = await startLocalCluster(settings);
  system = await startInProcessSystem('cluster_failover', {
    REDIS_URL: cluster.url,
    // The outbox sweep finds, within seconds, accepted payments whose job the dead master took with it.
    OUTBOX_SWEEP_EVERY_MS: '1000',
    OUTBOX_STALE_AFTER_MS: '3000',
  });
  companyId = await createCompany(system.ctx.db, {
    name: 'Failover Family Clinic',
    stripeSecretKey: 'sk_test_failover',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
}, 180_000);

afterAll(async () => {
  // After a failover a connection may still wait on the dead master; the close is bounded (as the processes' own
  // shutdown deadline bounds theirs) and the cluster is stopped whatever happened.
  try {
    if (system) {
      const closed = await Promise.race([system.close().then(() => true), sleep(30_000).then(() => false)]);
      if (!closed) console.warn('the system did not close within 30 s after the failover; stopping the cluster');
    }
  } finally {
    await stopLocalCluster(settings);
  }
}, 120_000);

it('loses no payment, charges none twice and keeps the audit trail whole when the queues’ master is killed', async () => {
  // Charges take a while at "Stripe", so the kill lands with jobs active, waiting and just added.
  system.sim.script({ method: 'POST', path: /\/confirm$/, delayMs: 150, times: Infinity });
  const slot = Number(await system.ctx.redis.cluster('KEYSLOT', system.ctx.config.queuePrefix));
  const master = await ownerOf(slot, cluster.ports);
  expect(master).toBeDefined();

  const before = Array.from({ length: 20 }, (_, i) => pay(`failover-before-${i}`));
  // Kill once some charges are done and others are still queued or running.
  await waitFor(
    () => system.ctx.db.models.Payment.countDocuments({ companyId, status: 'succeeded' }),
    (n) => n >= 3,
    { timeoutMs: 60_000, what: 'the first charges to succeed' },
  );
  const pid = Number(await readFile(join(cluster.dir, String(master), 'redis.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  const killedAt = Date.now();

  // Payers keep paying through the failover; the api answers 202 (the sweep queues what it could not) or 503 (retried).
  const during = Array.from({ length: 10 }, (_, i) => pay(`failover-during-${i}`));
  const survivors = cluster.ports.filter((port) => port !== master);
  const newMaster = await waitFor(
    () => ownerOf(slot, survivors),
    (port) => port !== undefined && port !== master,
    { timeoutMs: 30_000, intervalMs: 200, what: `a replica to take over slot ${slot}` },
  );
  system.ctx.logger.info({ slot, master, newMaster, failoverMs: Date.now() - killedAt }, 'failed over');
  const after = Array.from({ length: 10 }, (_, i) => pay(`failover-after-${i}`));
  const accepted = await Promise.all([...before, ...during, ...after]);
  expect(new Set(accepted).size).toBe(40);

  // Every accepted payment reaches its final state.
  const { Payment, AuditEvent } = system.ctx.db.models;
  await waitFor(
    () => Payment.countDocuments({ companyId, status: 'succeeded' }),
    (n) => n === 40,
    { timeoutMs: 90_000, intervalMs: 250, what: 'all 40 accepted payments to succeed' },
  );
  const payments = await Payment.find({ companyId }).lean();
  expect(payments.map((p) => p._id).sort()).toEqual([...accepted].sort());

  // Exactly once at the gateway: one PaymentIntent per payment (every create carries the payment's id as its
  // idempotency key, so a replayed job gets the same one), confirmed into success once.
  const intents = new Set<string>();
  for (const payment of payments) {
    const creates = system.sim.requests.filter(
      (r) =>
        r.method === 'POST' &&
        r.path === '/v1/payment_intents' &&
        (r.form.metadata as Record<string, unknown> | undefined)?.payment_id === payment._id,
    );
    expect(creates.length).toBeGreaterThanOrEqual(1);
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([payment._id]));
    expect(system.sim.succeededChargeCount(payment.stripePaymentIntentId!)).toBe(1);
    intents.add(payment.stripePaymentIntentId!);
  }
  expect(intents.size).toBe(40);

  // The audit trail: each payment requested and succeeded exactly once, and the chain verifies.
  const trail = (action: string) => AuditEvent.find({ companyId, action, 'resource.type': 'payment' }).lean();
  await waitFor(
    async () => (await trail('payment.succeeded')).length,
    (n) => n >= 40,
    { timeoutMs: 60_000, what: 'every payment.succeeded audit event' },
  );
  for (const action of ['payment.requested', 'payment.succeeded']) {
    const ids = (await trail(action)).map((event) => event.resource.id);
    expect(ids.sort()).toEqual([...accepted].sort());
  }
  const auditor = await system.token(companyId, ['auditor'], { subject: 'usr-failover-auditor' });
  const verify = await fetch(`${system.url}/v1/companies/${companyId}/audit-events/verify`, {
    headers: { authorization: `Bearer ${auditor}` },
  });
  expect(verify.status).toBe(200);
  expect(await verify.json()).toMatchObject({ ok: true });

  // And no charge job is left behind in the new master.
  await waitFor(
    () => system.ctx.queues.charges.getJobCounts('active', 'waiting', 'delayed', 'prioritized'),
    (counts) => Object.values(counts).every((n) => n === 0),
    { timeoutMs: 30_000, what: 'the charges queue to drain' },
  );

  // The old master comes back as a replica of the new one, as an operator would bring it back.
  await restartClusterNode(settings, master!);
  expect(await ownerOf(slot, cluster.ports)).toBe(newMaster);
}, 240_000);
