import { randomBytes } from 'node:crypto';
import { ulid } from 'ulid';
import { sealValue } from '../api/audit-context';
import { openDatabase } from '../models';
import { loadAnchorSigner } from '../platform/anchor-key';
import { auditJobSchema, type AuditJob } from '../queues/audit.queue';
import type { BenchEntry, BenchResult } from './report';
import { createBenchWorld, positiveIntFromEnv, runBounded, serviceAddresses, withTeardown } from './support';

/**
 * Audit events appended per second to one company's hash chain, with the
 * sealed fields (source ip, user agent) encrypted as the ingress does, next to
 * plain unchained inserts of the same documents into another collection.
 *
 * BENCH_AUDIT_EVENTS (1000), BENCH_AUDIT_CONCURRENCY (20, like the audit worker).
 */
export const auditBench: BenchEntry = {
  name: 'audit',
  unit: 'events',
  run: () =>
    withTeardown(async (teardown): Promise<BenchResult> => {
      const count = positiveIntFromEnv('BENCH_AUDIT_EVENTS', 1_000);
      const concurrency = positiveIntFromEnv('BENCH_AUDIT_CONCURRENCY', 20);
      const world = await createBenchWorld('audit', serviceAddresses(), {});
      teardown.defer('close the bench world', () => world.close());
      const db = await openDatabase(world.config);
      teardown.defer('close the database', () => db.close());
      const companyId = `co_bench_${world.suffix}`;
      await db.encryption.ensureCompanyKey(companyId);

      const seal = (value: string) => sealValue(db.encryption, companyId, value);
      const event = async (i: number): Promise<AuditJob> =>
        auditJobSchema.parse({
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

      const time = async (task: (i: number) => Promise<void>) => {
        const started = process.hrtime.bigint();
        await runBounded(count, concurrency, task);
        return Number(process.hrtime.bigint() - started) / 1e9;
      };
      const plain = db.plainClient.db(world.dbName).collection(`audit_plain_${randomBytes(3).toString('hex')}`);
      // Baseline first: the same documents (already sealed), inserted as they are, no chain.
      const plainSeconds = await time(async (i) => {
        const job = await event(i);
        await plain.insertOne({ ...job, _id: job.eventId } as never);
      });
      const chainedSeconds = await time(async (i) => {
        await db.auditTrail.append(await event(i));
      });
      const signer = loadAnchorSigner(world.config.audit.anchorKeyFile, true);
      const report = await db.auditTrail.verify(companyId, signer.publicKey);
      if (!report.ok || report.checked !== count) throw new Error(`chain did not verify: ${JSON.stringify(report)}`);

      return {
        summary: `${count} events for one company, ${concurrency} in flight, ip and user agent encrypted per event`,
        throughput: [
          { label: 'hash-chained append (+ encryption)', count, seconds: chainedSeconds },
          { label: 'baseline: plain inserts (+ encryption)', count, seconds: plainSeconds },
        ],
        metrics: [
          { label: 'ratio chained / plain', value: (plainSeconds / chainedSeconds).toFixed(3) },
          { label: 'chain verified', value: `${report.checked} events, head ${report.head.sequence}` },
        ],
      };
    }),
};
