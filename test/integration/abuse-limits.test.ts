import { ulid } from 'ulid';
import type { RunningApi } from '../../api/main';
import { startApi } from '../../api/main';
import { AUDITED_PER_SOURCE_PER_MINUTE, AUDITED_PER_TRAIL_PER_MINUTE } from '../../api/audit-budget';
import { PLATFORM_AUDIT_SCOPE } from '../../domain/audit-actions';
import { createCompany, devAttestation } from '../../models/companies';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

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
  // The flood may straddle a minute boundary (two windows).
  expect(await authFailuresAudited()).toBeLessThanOrEqual(2 * AUDITED_PER_SOURCE_PER_MINUTE);

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

it('a token this api verified moments ago is held to its per-holder limit only; unverified ones from its address still count at the source', async () => {
  const source = '198.51.100.30';
  const token = await system.token(companyId, ['billing_manager']);
  // Twice the source's limit, all served: only the first verification of the token counted at the source.
  expect(await flood(2 * PER_SOURCE, 8, () => list(source, token))).toEqual({ 200: 2 * PER_SOURCE });
  const forged = await flood(2 * PER_SOURCE, 8, () => list(source, 'not-a-jwt'));
  expect(forged[401]).toBeLessThanOrEqual(PER_SOURCE);
  expect(forged[429]).toBeGreaterThanOrEqual(PER_SOURCE);
  expect(Object.keys(forged).sort()).toEqual(['401', '429']);
});

it('failures from many sources fill the trail no further than its own bound', async () => {
  const before = await authFailuresAudited();
  // 1,000 sources, one bad token each: every one is under its own bound, not under the trail's.
  const statuses = await flood(1_000, 32, (i) => list(`192.0.2.${i & 255}, 100.64.${i >> 8}.${i & 255}`, 'not-a-jwt'));
  expect(statuses[401]).toBe(1_000);
  // At most one trail bound per minute window (the run may straddle two).
  expect((await authFailuresAudited()) - before).toBeLessThanOrEqual(2 * AUDITED_PER_TRAIL_PER_MINUTE);
}, 120_000);

describe('failed authentication has its own per-source budget (issue 20)', () => {
  let defaults: RunningApi;
  beforeAll(async () => {
    // The general per-source limit at its default (3,000 a minute), far above the failed-authentication budget.
    defaults = await startApi(
      configWith(system.ctx, { PORT: '0', TRUST_PROXY: '1' }),
      system.ctx.logger,
      system.ctx.db,
    );
  });
  afterAll(async () => {
    await defaults.stop();
  });

  function listVia(base: string, forwardedFor: string, token: string): Promise<Response> {
    return fetch(`${base}/v1/companies/${companyId}/payments`, {
      headers: { authorization: `Bearer ${token}`, 'x-forwarded-for': forwardedFor, 'x-forwarded-proto': 'https' },
    });
  }

  it('700 invalid bearer tokens from one address in a burst: the budget is spent and the rest get 429 with Retry-After', async () => {
    const statuses = await flood(700, 16, (i) =>
      listVia(defaults.url, '198.51.100.40', `not-a-jwt-${i}`).then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      }),
    );
    // 30 a minute (the burst may straddle two minute windows); requests already past the check when the 30th failure
    // is counted may add up to the concurrency.
    expect(statuses[401]).toBeLessThanOrEqual(2 * 30 + 16);
    expect(statuses[429]).toBeGreaterThanOrEqual(700 - 2 * 30 - 16);
    const refused = await listVia(defaults.url, '198.51.100.40', 'not-a-jwt');
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('auth_rate_limited');
    // Another address still authenticates.
    expect(
      (await listVia(defaults.url, '198.51.100.41', await system.token(companyId, ['billing_manager']))).status,
    ).toBe(200);
  }, 120_000);

  it('IPv6 sources share the budget of their /64: rotating the interface id gains nothing', async () => {
    const statuses = await flood(100, 8, (i) =>
      listVia(defaults.url, `2001:db8:1:2::${(i + 1).toString(16)}`, 'not-a-jwt').then(async (r) => {
        await r.arrayBuffer();
        return r.status;
      }),
    );
    expect(statuses[401]).toBeLessThanOrEqual(2 * 30 + 8);
    expect(statuses[429]).toBeGreaterThanOrEqual(100 - 2 * 30 - 8);
    // Another /64 has its own budget.
    expect((await listVia(defaults.url, '2001:db8:1:3::1', 'not-a-jwt')).status).toBe(401);
  }, 60_000);
});

describe('Stripe webhook deliveries and the per-source limit (issue 20)', () => {
  const secret = 'whsec_abuselimitstest0001';
  let strict: RunningApi | undefined;
  let webhookCompany: string;
  beforeAll(async () => {
    webhookCompany = await createCompany(system.ctx.db, { name: 'Lakeside Webhooks' });
    const admin = await system.token(webhookCompany, ['company_admin'], { subject: 'usr-admin' });
    await configureStripeWebhooks(system, webhookCompany, admin, {
      secretKey: 'sk_test_51LakesideWebhookKey0001',
      webhookSigningSecrets: [secret],
    });
    strict = await startApi(
      configWith(system.ctx, { PORT: '0', RATE_LIMIT_PER_SOURCE_PER_MINUTE: '20' }),
      system.ctx.logger,
      system.ctx.db,
    );
  });
  afterAll(async () => {
    await strict?.stop();
  });

  it('verified deliveries are not held to the per-source limit; forged ones spend the failed-authentication budget', async () => {
    const delivered = await flood(40, 4, async (i) => {
      const response = await deliverSigned(
        strict!.url,
        webhookCompany,
        stripeEventEnvelope(`evt_${ulid()}`, 'customer.created', {
          id: `cus_abuse${i}`,
          object: 'customer',
        }),
        { secret },
      );
      await response.arrayBuffer();
      return response.status;
    });
    expect(delivered).toEqual({ 200: 40 });
    const forged = await flood(100, 4, async () => {
      const response = await deliverSigned(
        strict!.url,
        webhookCompany,
        stripeEventEnvelope(`evt_${ulid()}`, 'customer.created', {}),
        {
          secret: 'whsec_not_ours',
        },
      );
      await response.arrayBuffer();
      return response.status;
    });
    expect(forged[400]).toBeLessThanOrEqual(2 * 30 + 4);
    expect(forged[429]).toBeGreaterThanOrEqual(100 - 2 * 30 - 4);
  }, 60_000);
});
