import { setTimeout as sleep } from 'node:timers/promises';
import { createCompany, devAttestation } from '../../models/companies';
import { ALL_QUEUE_NAMES } from '../../queues';
import { chargeJobId } from '../../queues/charges.queue';
import { cli } from '../support/cli';
import { DashboardClient } from '../support/dashboard-client';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

const IDLE_SECONDS = 3;
let system: InProcessSystem;
let companyId: string;
let failedJobId: string;

async function platformToken(role: 'platform_ops' | 'platform_admin', subject = `usr-${role.replace('_', '-')}`) {
  return system.token('platform', [role], { subject });
}

async function signedIn(role: 'platform_ops' | 'platform_admin'): Promise<DashboardClient> {
  const client = new DashboardClient(system.url);
  const response = await client.signIn(await platformToken(role));
  expect(response.status).toBe(303);
  expect(response.headers.get('location')).toBe('/admin/queues');
  return client;
}

async function auditEvent(filter: Record<string, unknown>) {
  return waitFor(
    () => system.ctx.db.models.AuditEvent.findOne({ companyId: 'platform', ...filter }).lean(),
    (event) => event !== null,
    { what: `platform audit event ${JSON.stringify(filter)}` },
  );
}

async function chargeJobState() {
  return (await system.ctx.queues.charges.getJob(failedJobId))?.getState();
}

beforeAll(async () => {
  system = await startInProcessSystem('dashboard', { DASHBOARD_IDLE_TIMEOUT_SECONDS: String(IDLE_SECONDS) });
  companyId = await createCompany(system.ctx.db, {
    name: 'Harbor Family Practice',
    stripeSecretKey: 'sk_test_harbor',
    compliance: devAttestation('test'),
  });
  // A declined charge: its job fails at once with the decline's reason code.
  const response = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${await system.token(companyId)}`,
      'content-type': 'application/json',
      'idempotency-key': `dashboard-declined-${Date.now()}`,
    },
    body: JSON.stringify({
      amount: 5_100,
      currency: 'usd',
      customer: 'cus_Dashboard01',
      paymentMethod: 'pm_card_chargeDeclinedInsufficientFunds',
    }),
  });
  const paymentId = ((await response.json()) as { id: string }).id;
  failedJobId = chargeJobId(paymentId);
  await waitFor(chargeJobState, (state) => state === 'failed', { what: 'the declined charge job to fail' });
});

afterAll(async () => {
  await system.close();
});

describe('signing in', () => {
  it('sends a browser without a session to the sign-in page, and refuses its API calls', async () => {
    const client = new DashboardClient(system.url);
    const page = await client.request('/admin/queues');
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/admin/queues/sign-in');
    const signIn = await client.request('/admin/queues/sign-in');
    expect(signIn.status).toBe(200);
    expect(signIn.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(await signIn.text()).toContain('name="token"');
    expect((await client.json('/queues')).status).toBe(401);
    expect((await client.action(`/queues/charges/${failedJobId}/retry`)).status).toBe(401);
    // No bearer token makes the board's routes usable either.
    const bearer = await fetch(`${system.url}/admin/queues/api/queues`, {
      headers: { authorization: `Bearer ${await platformToken('platform_admin')}` },
    });
    expect(bearer.status).toBe(401);
  });

  it.each([
    ['company_admin', 'platform_role_required'],
    ['ops', 'platform_role_required'],
  ] as const)('refuses a company token (%s) with 403, audited', async (role, reason) => {
    const client = new DashboardClient(system.url);
    const subject = `usr-company-${role.replace('_', '-')}`;
    const response = await client.signIn(await system.token(companyId, [role], { subject }));
    expect(response.status).toBe(403);
    expect(await response.text()).toContain('platform operators only');
    expect(client.cookies.size).toBe(0);
    expect(await auditEvent({ action: 'dashboard.denied', 'actor.id': subject })).toMatchObject({
      outcome: 'denied',
      reason,
      route: 'POST /admin/queues/sign-in',
    });
  });

  it('refuses a token that does not verify (401, auth.failed) and a platform role claimed for a company', async () => {
    const client = new DashboardClient(system.url);
    expect((await client.signIn('not-a-token')).status).toBe(401);
    const forCompany = await client.signIn(await system.token(companyId, ['platform_admin'], { subject: 'usr-x' }));
    expect(forCompany.status).toBe(403);
    expect(await auditEvent({ action: 'dashboard.denied', 'actor.id': 'usr-x' })).toMatchObject({
      reason: 'platform_token_required',
    });
  });

  it('keeps company API routes closed to platform tokens', async () => {
    const response = await fetch(`${system.url}/v1/companies/${companyId}/payments?limit=1`, {
      headers: { authorization: `Bearer ${await platformToken('platform_admin')}` },
    });
    expect(response.status).toBe(403);
  });

  it('sets the session cookie HttpOnly and SameSite=Strict (Secure only over TLS here: this api is plain http)', async () => {
    const client = new DashboardClient(system.url);
    const response = await client.signIn(await platformToken('platform_ops'));
    const cookies = response.headers.getSetCookie();
    const session = cookies.find((c) => c.startsWith('hb_dashboard='));
    expect(session).toMatch(/; HttpOnly/);
    expect(session).toMatch(/; SameSite=Strict/);
    expect(session).toMatch(/; Path=\/admin\/queues/);
    expect(session).not.toMatch(/Secure/);
    expect(cookies.find((c) => c.startsWith('XSRF-TOKEN='))).toMatch(/SameSite=Strict/);
    expect(await auditEvent({ action: 'dashboard.signed_in', 'actor.id': 'usr-platform-ops' })).toMatchObject({
      outcome: 'success',
      actor: { type: 'user', roles: ['platform_ops'] },
    });
  });
});

describe('platform_ops: read only', () => {
  it('sees every queue with its counts, marked read-only, and the failed job with ids and a reason code', async () => {
    const client = await signedIn('platform_ops');
    const page = await client.request('/admin/queues');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const { status, body } = await client.json('/queues?activeQueue=charges&status=failed&page=1&jobsPerPage=10');
    expect(status).toBe(200);
    expect(body.queues.map((q: { name: string }) => q.name).sort()).toEqual([...ALL_QUEUE_NAMES].sort());
    for (const queue of body.queues) {
      expect(queue).toMatchObject({ readOnlyMode: true, allowRetries: false, counts: expect.any(Object) });
    }
    const charges = body.queues.find((q: { name: string }) => q.name === 'charges');
    expect(charges.counts.failed).toBeGreaterThanOrEqual(1);
    const job = charges.jobs.find((j: { id: string }) => j.id === failedJobId);
    expect(job.failedReason).toMatch(/^[a-z][a-z0-9_]*$/);
    expect(Object.values(job.data).every((v) => typeof v === 'string' && /^[A-Za-z0-9_.:|+-]+$/.test(v))).toBe(true);
    for (const trace of job.stacktrace) expect(trace).not.toMatch(/insufficient|declined card|\s{2}[A-Z][a-z]+ [a-z]/);
  });

  it('is refused a retry server-side (403, audited), and the job stays failed', async () => {
    const client = await signedIn('platform_ops');
    const response = await client.action(`/queues/charges/${failedJobId}/retry`);
    expect(response.status).toBe(403);
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('read_only_role');
    expect(await chargeJobState()).toBe('failed');
    expect(await auditEvent({ action: 'dashboard.denied', reason: 'read_only_role' })).toMatchObject({
      actor: { id: 'usr-platform-ops', roles: ['platform_ops'] },
    });
  });
});

describe('CSRF and origin', () => {
  it('refuses a state change without the CSRF token, or from another origin, even for platform_admin', async () => {
    const client = await signedIn('platform_admin');
    const noToken = await client.request(`/admin/queues/api/queues/charges/${failedJobId}/retry`, { method: 'PUT' });
    expect(noToken.status).toBe(403);
    const crossSite = await client.action(`/queues/charges/${failedJobId}/retry`, { origin: 'https://evil.example' });
    expect(crossSite.status).toBe(403);
    expect(((await crossSite.json()) as { error: { code: string } }).error.code).toBe('origin_mismatch');
    const noOrigin = await client.action(`/queues/charges/${failedJobId}/retry`, { origin: '' });
    expect(noOrigin.status).toBe(403);
    expect(await chargeJobState()).toBe('failed');
    expect(await auditEvent({ action: 'dashboard.denied', reason: 'csrf_token_invalid' })).toBeTruthy();
  });

  it('refuses what the board can do beyond retry, clean and promote (here: emptying a queue)', async () => {
    const client = await signedIn('platform_admin');
    const response = await client.action('/queues/charges/empty');
    expect(response.status).toBe(403);
    expect(await system.ctx.queues.charges.getJob(failedJobId)).toBeDefined();
  });
});

describe('what may be cleaned, loaded and seen (issue 20)', () => {
  it('refuses cleaning pending work (delayed, waiting, one delayed job) and anything on the audit queue: 403, audited, the jobs stay', async () => {
    const client = await signedIn('platform_admin');
    const delayed = await system.ctx.queues.charges.add('probe', { paymentId: 'pay_probe' } as never, {
      jobId: `probe-delayed-${Date.now()}`,
      delay: 3_600_000,
    });
    for (const path of [
      '/queues/charges/clean/delayed',
      '/queues/charges/clean/wait',
      '/queues/charges/clean/paused',
      '/queues/charges/clean/prioritized',
      `/queues/charges/${delayed.id}/clean`,
      '/queues/audit/clean/completed',
      '/queues/audit/clean/failed',
    ]) {
      const response = await client.action(path);
      expect({ path, status: response.status }).toEqual({ path, status: 403 });
    }
    expect(await system.ctx.queues.charges.getJobState(delayed.id!)).toBe('delayed');
    expect(await auditEvent({ action: 'dashboard.denied', reason: 'only_finished_jobs_cleanable' })).toBeTruthy();
    expect(await auditEvent({ action: 'dashboard.denied', reason: 'queue_not_cleanable' })).toBeTruthy();
    await delayed.remove();
  });

  it('caps the page size, and shows worker addresses to platform_admin only (Redis details to no one)', async () => {
    const ops = await signedIn('platform_ops');
    const huge = await ops.json('/queues?activeQueue=charges&status=failed&page=1&jobsPerPage=50000');
    expect(huge.status).toBe(403);
    expect(huge.body.error.code).toBe('jobs_per_page_too_large');
    expect((await ops.json('/queues?activeQueue=charges&status=failed&page=1&jobsPerPage=100')).status).toBe(200);
    for (const path of ['/redis/stats', '/queues/charges/workers']) {
      const refused = await ops.json(path);
      expect({ path, status: refused.status, code: refused.body.error?.code }).toEqual({
        path,
        status: 403,
        code: 'platform_admin_only',
      });
    }
    const admin = await signedIn('platform_admin');
    expect((await admin.json('/queues/charges/workers')).status).toBe(200);
    // Redis INFO is shown to no one (the board's hideRedisDetails).
    expect((await admin.json('/redis/stats')).status).toBe(403);
  });
});

describe('platform_admin: retry', () => {
  it('retries a failed job, audited in the platform trail with queue and job id', async () => {
    const client = await signedIn('platform_admin');
    const queues = await client.json('/queues');
    expect(queues.body.queues.every((q: { readOnlyMode: boolean }) => q.readOnlyMode === false)).toBe(true);
    const response = await client.action(`/queues/charges/${failedJobId}/retry`);
    expect(response.status).toBeLessThan(300);
    await waitFor(chargeJobState, (state) => state !== 'failed', { what: 'the retried job to leave failed' });
    expect(await auditEvent({ action: 'dashboard.action', 'resource.id': `charges|${failedJobId}` })).toMatchObject({
      outcome: 'success',
      reason: 'retry',
      resource: { type: 'queue_job' },
      actor: { id: 'usr-platform-admin', roles: ['platform_admin'] },
      route: 'PUT /admin/queues/api/queues/:queueName/:jobId/retry',
    });
  });
});

describe('one session per subject, tokens once, no doubled cookies (issue 20)', () => {
  it('signing in again ends the previous session', async () => {
    const first = new DashboardClient(system.url);
    expect((await first.signIn(await platformToken('platform_ops', 'usr-twice'))).status).toBe(303);
    expect((await first.json('/queues')).status).toBe(200);
    const second = new DashboardClient(system.url);
    expect((await second.signIn(await platformToken('platform_ops', 'usr-twice'))).status).toBe(303);
    expect((await second.json('/queues')).status).toBe(200);
    expect((await first.json('/queues')).status).toBe(401);
  });

  it('a sign-in token works once: the same token again is refused (401), audited token_reused', async () => {
    const token = await platformToken('platform_ops', 'usr-token-once');
    expect((await new DashboardClient(system.url).signIn(token)).status).toBe(303);
    const again = new DashboardClient(system.url);
    expect((await again.signIn(token)).status).toBe(401);
    expect(again.cookies.size).toBe(0);
    expect(
      await auditEvent({ action: 'dashboard.denied', 'actor.id': 'usr-token-once', reason: 'token_reused' }),
    ).toMatchObject({ outcome: 'denied' });
  });

  it('refuses a request that carries the session cookie twice (400, audited)', async () => {
    const client = await signedIn('platform_ops');
    const session = client.cookies.get('hb_dashboard')!;
    const response = await fetch(`${system.url}/admin/queues/api/queues`, {
      headers: { cookie: `hb_dashboard=${session}; hb_dashboard=planted-by-someone-else` },
    });
    expect(response.status).toBe(400);
    expect(await auditEvent({ action: 'dashboard.denied', reason: 'duplicate_cookie' })).toMatchObject({
      outcome: 'denied',
    });
  });

  it('an operator revokes a subject’s session from the CLI: it ends at once, audited', async () => {
    const client = new DashboardClient(system.url);
    expect((await client.signIn(await platformToken('platform_admin', 'usr-revoked'))).status).toBe(303);
    expect((await client.json('/queues')).status).toBe(200);
    const run = await cli(['dashboard-sessions', 'revoke', '--subject', 'usr-revoked'], system.ctx.env);
    expect(run).toMatchObject({ code: 0 });
    expect(run.out).toContain('usr-revoked: dashboard session ended');
    expect((await client.json('/queues')).status).toBe(401);
    expect(
      await auditEvent({ action: 'dashboard.sessions_revoked', 'resource.id': 'usr-revoked', reason: 'session_ended' }),
    ).toMatchObject({ outcome: 'success' });
  });
});

describe('sessions end', () => {
  it(`after ${IDLE_SECONDS}s without use, even while the page keeps polling`, async () => {
    const client = await signedIn('platform_ops');
    expect((await client.json('/queues')).status).toBe(200);
    // Waiting is the behaviour under test: the idle timer runs on wall-clock time.
    await sleep(IDLE_SECONDS * 500);
    // The page's poll repeats what it showed: it is not use, and does not renew the session.
    expect((await client.json('/queues')).status).toBe(200);
    await sleep(IDLE_SECONDS * 500 + 300);
    const page = await client.request('/admin/queues');
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/admin/queues/sign-in?message=session_ended');
    // The ended session's cookies are cleared with it.
    expect(client.cookies.size).toBe(0);
    expect((await client.json('/queues')).status).toBe(401);
  });

  it('stays signed in while used', async () => {
    const client = await signedIn('platform_ops');
    for (const queue of ['charges', 'refunds', 'audit']) {
      await sleep(IDLE_SECONDS * 400);
      expect((await client.json(`/queues?activeQueue=${queue}`)).status).toBe(200);
    }
  });

  it('on sign-out (a POST with the CSRF token), audited; the old cookie is worth nothing after', async () => {
    const client = await signedIn('platform_admin');
    const stolen = new Map(client.cookies);
    const page = await client.request('/admin/queues/sign-out');
    const csrf = /name="csrf" value="([^"]+)"/.exec(await page.text())?.[1];
    expect(csrf).toBe(client.cookies.get('XSRF-TOKEN'));
    const forged = new DashboardClient(system.url);
    stolen.forEach((value, name) => forged.cookies.set(name, value));
    expect((await forged.request('/admin/queues/sign-out', { method: 'POST', form: { csrf: 'wrong' } })).status).toBe(
      403,
    );

    const response = await client.request('/admin/queues/sign-out', { method: 'POST', form: { csrf: csrf! } });
    expect(response.status).toBe(303);
    expect(response.headers.get('location')).toBe('/admin/queues/sign-in?message=signed_out');
    expect(client.cookies.size).toBe(0);
    const replay = new DashboardClient(system.url);
    stolen.forEach((value, name) => replay.cookies.set(name, value));
    expect((await replay.json('/queues')).status).toBe(401);
    expect(await auditEvent({ action: 'dashboard.signed_out', 'actor.id': 'usr-platform-admin' })).toMatchObject({
      outcome: 'success',
    });
  });
});
