import type { RunningApi } from '../../api/main';
import { startApi } from '../../api/main';
import { AUDITED_PER_SOURCE_PER_MINUTE, AUDITED_PER_TRAIL_PER_MINUTE } from '../../api/audit-budget';
import { PLATFORM_AUDIT_SCOPE } from '../../domain/audit-actions';
import { createCompany, devAttestation } from '../../models/companies';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';

/**
 * Issue 12 §5: limits that hold. Behind one trusted proxy hop (TRUST_PROXY=1) the source of a request is the
 * address that proxy saw: the last X-Forwarded-For entry; whatever a client puts before it is its own claim.
 */
const PER_SOURCE = 100;
let system: InProcessSystem;
let api: RunningApi;
let companyId: string;

beforeAll(async () => {
  system = await startInProcessSystem('abuse_limits');
  api = await startApi(
    configWith(system.ctx, { PORT: '0', TRUST_PROXY: '1', RATE_LIMIT_PER_SOURCE_PER_MINUTE: String(PER_SOURCE) }),
    system.ctx.logger,
    system.ctx.db,
  );
  companyId = await createCompany(system.ctx.db, {
    name: 'Lakeside Pediatrics',
    stripeSecretKey: 'sk_test_lakeside',
    compliance: devAttestation('test'),
  });
});

afterAll(async () => {
  await api.stop();
  await system.close();
});

/** GET a payment list as a caller behind the proxy at `forwardedFor`, with `token`; the status. */
function list(forwardedFor: string, token: string): Promise<number> {
  return fetch(`${api.url}/v1/companies/${companyId}/payments`, {
    headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': forwardedFor, 'x-forwarded-proto': 'https' },
  }).then(async (response) => {
    await response.arrayBuffer();
    return response.status;
  });
}

/** Sends `count` requests, `concurrency` at a time; how many got each status. */
async function flood(count: number, concurrency: number, send: (i: number) => Promise<number>) {
  const statuses: Record<number, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < count; i = next++) {
        const status = await send(i);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
    }),
  );
  return statuses;
}

async function authFailuresAudited(): Promise<number> {
  // Everything enqueued has been appended once the audit queue is empty.
  await waitFor(
    () => system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed'),
    (counts) => (counts.waiting ?? 0) + (counts.active ?? 0) + (counts.delayed ?? 0) === 0,
    { timeoutMs: 60_000, what: 'the audit queue to drain' },
  );
  return system.ctx.db.models.AuditEvent.countDocuments({ companyId: PLATFORM_AUDIT_SCOPE, action: 'auth.failed' });
}

it('a flood of 10,000 invalid tokens from one address is limited before authentication, audited within bounds, and the api keeps answering', async () => {
  const statuses = await flood(10_000, 32, () => list('198.51.100.7', 'not-a-jwt'));
  expect(statuses[401]).toBeLessThanOrEqual(PER_SOURCE);
  expect(statuses[429]).toBeGreaterThanOrEqual(10_000 - PER_SOURCE);
  expect(Object.keys(statuses).sort()).toEqual(['401', '429']);
  expect(await authFailuresAudited()).toBeLessThanOrEqual(AUDITED_PER_SOURCE_PER_MINUTE);

  // Another caller is served at once.
  const token = await system.token(companyId, ['billing_manager']);
  const started = Date.now();
  expect(await list('198.51.100.8', token)).toBe(200);
  expect(Date.now() - started).toBeLessThan(2_000);
}, 120_000);

it('rotating what the client puts in X-Forwarded-For does not escape the per-source limit', async () => {
  const statuses = await flood(3 * PER_SOURCE, 16, (i) => list(`10.0.${i >> 8}.${i & 255}, 203.0.113.9`, 'not-a-jwt'));
  expect(statuses[401]).toBeLessThanOrEqual(PER_SOURCE);
  expect(statuses[429]).toBeGreaterThanOrEqual(2 * PER_SOURCE);
});

it('failures from many sources fill the trail no further than its own bound', async () => {
  const before = await authFailuresAudited();
  // 1,000 sources, one bad token each: every one is under its own bound, not under the trail's.
  const statuses = await flood(1_000, 32, (i) => list(`192.0.2.${i & 255}, 100.64.${i >> 8}.${i & 255}`, 'not-a-jwt'));
  expect(statuses[401]).toBe(1_000);
  // At most one trail bound per minute window (the run may straddle two).
  expect((await authFailuresAudited()) - before).toBeLessThanOrEqual(2 * AUDITED_PER_TRAIL_PER_MINUTE);
}, 120_000);
