import { decideAccess, type Principal } from '../../domain/access-policy';
import { decideDashboardRequest, decideDashboardRole } from '../../domain/dashboard-access';
import { HIDDEN, idsOnly, shownBoardAnswer, shownReason, shownStacktrace } from '../../domain/dashboard-view';

const principal = (overrides: Partial<Principal>): Principal => ({
  subject: 'usr-1',
  subjectType: 'user',
  companyId: 'platform',
  roles: ['platform_ops'],
  officeIds: [],
  permissions: [],
  issuedAt: Math.floor(Date.now() / 1000),
  ...overrides,
});

describe('who gets into the queue dashboard', () => {
  it.each([
    [{ roles: ['platform_ops'] }, { allowed: true, role: 'platform_ops' }],
    [{ roles: ['platform_ops', 'platform_admin'] }, { allowed: true, role: 'platform_admin' }],
    [
      { roles: ['ops'], companyId: 'cmp-1' },
      { allowed: false, reason: 'platform_role_required' },
    ],
    [{ roles: ['company_admin'] }, { allowed: false, reason: 'platform_role_required' }],
    [{ roles: ['platform_admin', 'company_admin'] }, { allowed: false, reason: 'platform_roles_only' }],
    [
      { roles: ['platform_admin'], companyId: 'cmp-1' },
      { allowed: false, reason: 'platform_token_required' },
    ],
    [
      { roles: ['platform_admin'], subjectType: 'service' },
      { allowed: false, reason: 'user_token_required' },
    ],
  ] as const)('%j → %j', (overrides, decision) => {
    expect(decideDashboardRole(principal(overrides as unknown as Partial<Principal>))).toEqual(decision);
  });

  it('platform roles grant no company permission, and a platform token reaches no company', () => {
    const context = { now: new Date(), emergencyWindowSeconds: 600 };
    const admin = principal({ roles: ['platform_admin'] });
    expect(decideAccess(admin, 'payments:read', { companyId: 'cmp-1' }, context)).toMatchObject({ allowed: false });
    expect(decideAccess(admin, 'payments:read', { companyId: 'platform' }, context)).toMatchObject({ allowed: false });
    const mixed = principal({ roles: ['platform_admin', 'company_admin'] });
    expect(decideAccess(mixed, 'payments:read', { companyId: 'platform' }, context)).toMatchObject({ allowed: false });
    const forCompany = principal({ roles: ['platform_admin'], companyId: 'cmp-1' });
    expect(decideAccess(forCompany, 'payments:read', { companyId: 'cmp-1' }, context)).toEqual({
      allowed: false,
      reason: 'permission_missing',
    });
  });

  it('reads for both roles; retry, clean and promote for platform_admin only; nothing else for anyone', () => {
    expect(decideDashboardRequest('platform_ops', 'GET', '/api/queues')).toEqual({ allowed: true });
    expect(decideDashboardRequest('platform_ops', 'PUT', '/api/queues/:queueName/:jobId/retry')).toEqual({
      allowed: false,
      reason: 'read_only_role',
    });
    expect(decideDashboardRequest('platform_admin', 'PUT', '/api/queues/:queueName/:jobId/retry')).toEqual({
      allowed: true,
      action: 'retry',
    });
    expect(
      decideDashboardRequest('platform_admin', 'PUT', '/api/queues/:queueName/clean/:queueStatus', {
        queueName: 'charges',
        queueStatus: 'completed',
      }),
    ).toEqual({ allowed: true, action: 'clean_all' });
    for (const route of ['/api/queues/:queueName/empty', '/api/queues/:queueName/obliterate', '/api/queues/pause']) {
      expect(decideDashboardRequest('platform_admin', 'PUT', route)).toMatchObject({ allowed: false });
    }
    expect(decideDashboardRequest('platform_admin', 'POST', '/api/queues/:queueName/add')).toMatchObject({
      allowed: false,
    });
    expect(
      decideDashboardRequest('platform_admin', 'PATCH', '/api/queues/:queueName/:jobId/update-data'),
    ).toMatchObject({ allowed: false });
  });
});

describe('what the dashboard shows of a job', () => {
  it('keeps ids, codes, numbers and times; hides anything with spaces, @ or beyond its bounds', () => {
    expect(idsOnly({ paymentId: 'pay_01J', requestId: 'req_01J', attempt: 2, at: '2026-01-02T03:04:05.000Z' })).toEqual(
      { paymentId: 'pay_01J', requestId: 'req_01J', attempt: 2, at: '2026-01-02T03:04:05.000Z' },
    );
    expect(idsOnly({ payer: 'Jane Q Patient', email: 'jane@example.com', note: 'x'.repeat(121) })).toEqual({
      payer: HIDDEN,
      email: HIDDEN,
      note: HIDDEN,
    });
    expect(idsOnly({ 'first name': 'Jane' })).toEqual({ [`${HIDDEN}1`]: HIDDEN });
    expect(idsOnly({ sealed: { sourceIp: 'c2VhbGVk/+==' } })).toEqual({ sealed: { sourceIp: HIDDEN } });
  });

  it('shows failure reasons as codes only and traces as their frames only', () => {
    expect(shownReason('card_declined')).toBe('card_declined');
    expect(shownReason('Payment for Jane failed')).toBe(HIDDEN);
    expect(
      shownStacktrace([
        'Error: card_declined\n    at processCharge (/app/dist/workers/charges.worker.js:10:5)\n    leaked: Jane Q Patient',
      ]),
    ).toEqual(['Error: card_declined\n    at processCharge (/app/dist/workers/charges.worker.js:10:5)']);
    expect(shownStacktrace(['Error: Jane Q Patient owes 42\n    at x (/a.js:1:1)'])).toEqual(['    at x (/a.js:1:1)']);
  });

  it('filters every job-shaped field of an answer, wherever it is', () => {
    const answer = {
      queues: [
        {
          name: 'charges',
          jobs: [{ id: 'charge-pay_1', data: { note: 'free text' }, failedReason: 'oops, Jane', opts: { a: 'b c' } }],
        },
      ],
      schedulers: [{ id: 'sweep', template: { data: { who: 'Jane Q' } } }],
    };
    expect(shownBoardAnswer(answer)).toEqual({
      queues: [
        {
          name: 'charges',
          jobs: [{ id: 'charge-pay_1', data: { note: HIDDEN }, failedReason: HIDDEN, opts: { a: HIDDEN } }],
        },
      ],
      schedulers: [{ id: 'sweep', template: { data: { who: HIDDEN } } }],
    });
  });
});

describe('what the dashboard may clean (issue 20)', () => {
  const clean = (target: Record<string, string>, route = '/api/queues/:queueName/clean/:queueStatus') =>
    decideDashboardRequest('platform_admin', 'PUT', route, target);
  it.each(['completed', 'failed'])('finished jobs (%s) of a work queue', (state) => {
    expect(clean({ queueName: 'charges', queueStatus: state })).toEqual({ allowed: true, action: 'clean_all' });
    expect(clean({ queueName: 'charges', jobState: state }, '/api/queues/:queueName/:jobId/clean')).toEqual({
      allowed: true,
      action: 'clean',
    });
  });
  it.each(['wait', 'delayed', 'paused', 'prioritized', 'active', 'waiting-children', 'unknown'])(
    'never pending work (%s)',
    (state) => {
      expect(clean({ queueName: 'charges', queueStatus: state })).toEqual({
        allowed: false,
        reason: 'only_finished_jobs_cleanable',
      });
      expect(clean({ queueName: 'charges', jobState: state }, '/api/queues/:queueName/:jobId/clean')).toMatchObject({
        allowed: false,
      });
    },
  );
  it('nothing on the audit queue, whatever the state', () => {
    expect(clean({ queueName: 'audit', queueStatus: 'completed' })).toEqual({
      allowed: false,
      reason: 'queue_not_cleanable',
    });
  });
  it('worker addresses and Redis details are platform_admin reads', () => {
    expect(decideDashboardRequest('platform_ops', 'GET', '/api/queues/:queueName/workers')).toEqual({
      allowed: false,
      reason: 'platform_admin_only',
    });
    expect(decideDashboardRequest('platform_admin', 'GET', '/api/queues/:queueName/workers')).toEqual({
      allowed: true,
    });
  });
});
