import { Queue } from 'bullmq';
import { ulid } from '../platform/ids';
import { sealValue } from '../api/audit-context';
import { openDatabase } from '../models';
import { loadAnchorSigner } from '../models/anchor-key';
import { type AuditEventInput } from '../domain/audit-event';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { QUEUE_NAMES } from '../queues/names';
import { BASELINE_QUEUES } from './baseline-process';
import { entryResult, type BenchEntry, type EntryResult, dataBoundBaseline } from './report';
import { createBenchWorld, positiveIntFromEnv, runBounded, serviceAddresses, withTeardown } from './support';
import {
  clientSettings,
  completionCounter,
  perOp,
  readStats,
  resetCounters,
  settle,
  splitIntoRounds,
  startBaselines,
  startProduct,
} from './system';

/**
 * Audit events appended per second by the real audit worker (workers process) to
 * one company's hash chain, source ip and user agent sealed as the ingress seals
 * them. Jobs are added by the bench (`enqueueAuditEvent`, 32 at a time) and
 * timed from the first add to the last completion. Baselines on the same jobs:
 * a worker that inserts each event as it is (data-bound: the one insert an
 * append issues, plain driver), and a worker that does nothing (limit); both at
 * the audit worker's concurrency. The chain is verified at the end.
 *
 * BENCH_AUDIT_EVENTS (1000), BENCH_WARMUP (50), BENCH_ROUNDS (2), AUDIT_CONCURRENCY (app default).
 */
export const auditBench: BenchEntry = {
  name: 'audit',
  run: () =>
    withTeardown(async (teardown): Promise<EntryResult> => {
      const ops = positiveIntFromEnv('BENCH_AUDIT_EVENTS', 1_000);
      const deadlineMs = positiveIntFromEnv('BENCH_DEADLINE_MS', 180_000);
      const settings = clientSettings();
      const audit: Record<string, string> = {};
      if (process.env.AUDIT_CONCURRENCY) audit.AUDIT_CONCURRENCY = process.env.AUDIT_CONCURRENCY;
      const world = await createBenchWorld('audit', serviceAddresses(), audit);
      teardown.defer('close the bench world', () => world.close());
      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());
      const companyId = `co_bench_${world.suffix}`;
      await db.encryption.ensureCompanyKey(companyId);

      // Sealed before the clock starts: that is the ingress's cost, not the worker's.
      const events: AuditEventInput[] = [];
      for (let i = 0; i < ops + settings.warmup; i++) {
        const seal = (value: string) => sealValue(db.encryption, companyId, value);
        events.push({
          eventId: `evt_${ulid()}`,
          companyId,
          action: 'payment.requested',
          outcome: 'success',
          actor: { type: 'service', id: 'svc-bench' },
          resource: { type: 'payment', id: `pay_bench_${i}` },
          requestId: `req_${ulid()}`,
          sealed: { sourceIp: await seal(`10.0.${i % 250}.${i % 7}`), userAgent: await seal('bench-agent/1.0') },
          occurredAt: new Date().toISOString(),
        });
      }

      const [workers, baselines] = await Promise.all([
        startProduct(world, teardown, 'workers'),
        startBaselines(world, teardown, 'workers'),
      ]);
      const queues = {
        product: QUEUE_NAMES.audit,
        data: BASELINE_QUEUES.audit,
        limit: BASELINE_QUEUES.noopAudit,
      } as const;
      const counters = {
        product: await completionCounter(world, teardown, queues.product),
        data: await completionCounter(world, teardown, queues.data),
        limit: await completionCounter(world, teardown, queues.limit),
      };
      const drive = async (which: keyof typeof queues, part: AuditEventInput[]) => {
        const queue = new Queue(queues[which], { connection: world.redis, prefix: world.config.queuePrefix });
        try {
          const before = counters[which].completed;
          const startedAt = Date.now();
          await runBounded(part.length, settings.connections, (i) => enqueueAuditEvent(queue, part[i]!));
          return ((await counters[which].until(before + part.length, deadlineMs)) - startedAt) / 1000;
        } finally {
          await queue.close();
        }
      };
      const warm = events.slice(ops);
      const measured = events.slice(0, ops);
      for (const which of ['product', 'data', 'limit'] as const) await drive(which, warm);

      const limitSeconds = await drive('limit', measured);
      await resetCounters([baselines, workers]);
      let dataSeconds = 0;
      let seconds = 0;
      for (const part of splitIntoRounds(measured, settings.rounds)) {
        dataSeconds += await drive('data', part);
        seconds += await drive('product', part);
      }
      const dataPerOp = perOp(await readStats({ 'data workers': baselines }), ops);
      const productPerOp = perOp(await readStats({ workers }), ops);
      await settle([
        { perOp: productPerOp, children: { workers } },
        { perOp: dataPerOp, children: { 'data workers': baselines } },
      ]);

      const signer = loadAnchorSigner(world.config.audit.anchorKeyFile, true);
      const report = await db.auditTrail.verify(companyId, signer.publicKey);
      if (!report.ok || report.checked !== ops + settings.warmup) {
        throw new Error(`chain did not verify: ${JSON.stringify(report)}`);
      }
      return entryResult({
        name: 'audit',
        summary:
          `${ops} events for one company through the audit worker (concurrency ${world.config.workers.auditConcurrency}), ` +
          `ip and user agent sealed; chain verified (${report.checked} events)`,
        unit: 'events',
        ops,
        seconds,
        p50Ms: null,
        p99Ms: null,
        baselines: {
          limit: { what: 'no-op worker, same jobs', perSecond: ops / limitSeconds },
          dataBound: dataBoundBaseline('plain insert of each event, same jobs', ops / dataSeconds, dataPerOp),
        },
        perOp: productPerOp,
      });
    }),
};
