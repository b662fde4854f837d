import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import { createCompany, devAttestation } from '../../models/companies';
import type { Role } from '../../domain/access-policy';
import { mintDevToken } from '../../devtools/tokens';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

let system: InProcessSystem;
let companyId: string;
let otherCompanyId: string;
let officePaymentId: string;

const body = { amount: 900, currency: 'usd', customer: 'cus_Matrix01', paymentMethod: 'pm_card_visa' };
const REASON = 'Patient transferred to ICU; verifying outstanding balance hold';

type Caller = {
  label: string;
  roles: Role[];
  offices?: string[];
  permissions?: string[];
  reason?: string;
  company?: 'other';
};

const callers: Record<string, Caller> = {
  admin: { label: 'company_admin', roles: ['company_admin'] },
  manager: { label: 'billing_manager', roles: ['billing_manager'] },
  officeMgr1: { label: 'office_manager of off_1', roles: ['office_manager'], offices: ['off_1'] },
  officeMgr2: { label: 'office_manager of off_2', roles: ['office_manager'], offices: ['off_2'] },
  clerk1: { label: 'billing_clerk of off_1', roles: ['billing_clerk'], offices: ['off_1'] },
  auditor: { label: 'auditor', roles: ['auditor'] },
  ops: { label: 'ops', roles: ['ops'] },
  glassReason: { label: 'emergency_access with a reason', roles: ['emergency_access'], reason: REASON },
  glassNoReason: { label: 'emergency_access without a reason', roles: ['emergency_access'] },
  serviceFull: {
    label: 'service with create+read',
    roles: ['service'],
    permissions: ['payments:create', 'payments:read'],
  },
  serviceRead: { label: 'service with read only', roles: ['service'], permissions: ['payments:read'] },
  otherAdmin: { label: 'company_admin of another company', roles: ['company_admin'], company: 'other' },
};

// route → caller → expected status and reason, written out literally (not derived from the policy table).
const expected: Record<string, Record<keyof typeof callers, string>> = {
  'POST payment for off_1': {
    admin: '202',
    manager: '202',
    officeMgr1: '202',
    officeMgr2: '403 office_out_of_scope',
    clerk1: '202',
    auditor: '403 permission_missing',
    ops: '403 permission_missing',
    glassReason: '403 permission_missing',
    glassNoReason: '403 permission_missing',
    serviceFull: '202',
    serviceRead: '403 permission_missing',
    otherAdmin: '403 company_out_of_scope',
  },
  'POST company-level payment': {
    admin: '202',
    manager: '202',
    officeMgr1: '403 office_required',
    officeMgr2: '403 office_required',
    clerk1: '403 office_required',
    auditor: '403 permission_missing',
    ops: '403 permission_missing',
    glassReason: '403 permission_missing',
    glassNoReason: '403 permission_missing',
    serviceFull: '202',
    serviceRead: '403 permission_missing',
    otherAdmin: '403 company_out_of_scope',
  },
  'GET payment list': {
    admin: '200 company,off_1,off_2',
    manager: '200 company,off_1,off_2',
    officeMgr1: '200 off_1',
    officeMgr2: '200 off_2',
    clerk1: '200 off_1',
    auditor: '403 permission_missing',
    ops: '403 permission_missing',
    glassReason: '200 company,off_1,off_2',
    glassNoReason: '403 access_reason_required',
    serviceFull: '200 company,off_1,off_2',
    serviceRead: '200 company,off_1,off_2',
    otherAdmin: '403 company_out_of_scope',
  },
  'GET payment of off_1': {
    admin: '200',
    manager: '200',
    officeMgr1: '200',
    officeMgr2: '403 office_out_of_scope',
    clerk1: '200',
    auditor: '403 permission_missing',
    ops: '403 permission_missing',
    glassReason: '200',
    glassNoReason: '403 access_reason_required',
    serviceFull: '200',
    serviceRead: '200',
    otherAdmin: '403 company_out_of_scope',
  },
};

async function tokenFor(caller: Caller) {
  return mintDevToken(system.ctx.config, {
    companyId: caller.company === 'other' ? otherCompanyId : companyId,
    roles: caller.roles,
    officeIds: caller.offices,
    permissions: caller.permissions as never,
    subject: `usr-${caller.label.replace(/[^a-z0-9]+/gi, '-')}`,
  });
}

async function call(route: string, caller: Caller): Promise<string> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${await tokenFor(caller)}`,
    'content-type': 'application/json',
    'idempotency-key': `matrix-${ulid()}`,
  };
  if (caller.reason) headers['x-access-reason'] = caller.reason;
  const url = `${system.url}/v1/companies/${companyId}/payments`;
  if (route === 'GET payment list') {
    const response = await fetch(`${url}?limit=100`, { headers });
    const json = (await response.json()) as any;
    if (response.status !== 200) return `${response.status} ${json.error.code}`;
    // Which offices the caller saw ("company" for company-level payments).
    const offices = new Set<string>(json.items.map((p: { officeId?: string }) => p.officeId ?? 'company'));
    return `200 ${[...offices].sort().join(',')}`;
  }
  const response =
    route === 'GET payment of off_1'
      ? await fetch(`${url}/${officePaymentId}`, { headers })
      : await fetch(url, {
          method: 'POST',
          headers,
          body: JSON.stringify(route === 'POST payment for off_1' ? { ...body, officeId: 'off_1' } : body),
        });
  const json = (await response.json()) as any;
  return response.status === 403 ? `403 ${json.error.code}` : String(response.status);
}

beforeAll(async () => {
  system = await startInProcessSystem('access_matrix');
  companyId = await createCompany(system.ctx.db, {
    name: 'Northgate Orthopedics',
    stripeSecretKey: 'sk_test_northgate',
    compliance: devAttestation('test'),
  });
  otherCompanyId = await createCompany(system.ctx.db, {
    name: 'Elsewhere Clinic',
    stripeSecretKey: 'sk_test_elsewhere',
    compliance: devAttestation('test'),
  });
  const admin = await tokenFor(callers.admin!);
  const created = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${admin}`,
      'content-type': 'application/json',
      'idempotency-key': `seed-${ulid()}`,
    },
    body: JSON.stringify({ ...body, officeId: 'off_1' }),
  });
  officePaymentId = ((await created.json()) as any).id;
  // Payments in another office and at company level, so list scoping is visible.
  for (const extra of [{ ...body, officeId: 'off_2' }, body]) {
    await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${admin}`,
        'content-type': 'application/json',
        'idempotency-key': `seed-${ulid()}`,
      },
      body: JSON.stringify(extra),
    });
  }
});

afterAll(async () => system.close());

describe('every route × every role', () => {
  const cases = Object.entries(expected).flatMap(([route, byCaller]) =>
    Object.entries(byCaller).map(([key, outcome]) => [route, callers[key]!.label, key, outcome] as const),
  );
  it.each(cases)('%s as %s → %s', async (route, _label, key, outcome) => {
    expect(await call(route, callers[key]!)).toBe(outcome);
  });
});

describe('denials and emergency access are audited', () => {
  it('records access.denied with actor, route, permission, resource and reason', async () => {
    expect(await call('GET payment of off_1', callers.officeMgr2!)).toBe('403 office_out_of_scope');
    const event = await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.findOne({
          action: 'access.denied',
          'actor.id': 'usr-office-manager-of-off-2',
          permission: 'payments:read',
        }).lean(),
      (e) => e !== null,
      { what: 'access.denied event' },
    );
    expect(event).toMatchObject({
      companyId,
      officeId: 'off_1',
      outcome: 'denied',
      reason: 'office_out_of_scope',
      route: 'GET /v1/companies/:companyId/payments/:paymentId',
      resource: { type: 'payment', id: officePaymentId },
      actor: { type: 'user', id: 'usr-office-manager-of-off-2' },
    });
  });

  it('a token for another company is recorded in its own company trail, not in the target company', async () => {
    const event = await waitFor(
      () => system.ctx.db.models.AuditEvent.findOne({ action: 'access.denied', reason: 'company_out_of_scope' }).lean(),
      (e) => e !== null,
      { what: 'cross-company denial event' },
    );
    expect(event?.companyId).toBe(otherCompanyId);
  });

  it('records emergency access at high severity with the stated reason encrypted', async () => {
    expect(await call('GET payment of off_1', callers.glassReason!)).toBe('200');
    const event = await waitFor(
      () => system.ctx.db.models.AuditEvent.findOne({ action: 'access.emergency' }).lean(),
      (e) => e !== null,
      { what: 'access.emergency event' },
    );
    expect(event).toMatchObject({ severity: 'high', outcome: 'success', permission: 'payments:read', companyId });
    expect(event?.actor.accessReason).toBe(REASON);
    const raw = await system.ctx.rawMongo
      .db()
      .collection('audit_events')
      .findOne({ _id: event!._id as never });
    expect(raw?.actor.accessReason).toBeInstanceOf(Binary);
    expect((raw?.actor.accessReason as Binary).sub_type).toBe(6);
    expect(raw?.request.sourceIp).toBeInstanceOf(Binary);
    // The reason travelled to the audit worker only as ciphertext.
    const keys = await system.ctx.redis.keys(`${system.ctx.config.queuePrefix}:audit:*`);
    for (const key of keys) {
      if ((await system.ctx.redis.type(key)) !== 'hash') continue;
      // A phrase with spaces: base64 ciphertext can never contain it by chance.
      expect(JSON.stringify(await system.ctx.redis.hgetall(key))).not.toContain('transferred to ICU');
    }
  });
});

describe('listing payments', () => {
  it('pages with a cursor, newest first, each payment once', async () => {
    const token = await tokenFor(callers.admin!);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor ? `?limit=2&after=${cursor}` : '?limit=2';
      const response = await fetch(`${system.url}/v1/companies/${companyId}/payments${query}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const json = (await response.json()) as any;
      seen.push(...json.items.map((p: { id: string }) => p.id));
      cursor = json.nextCursor;
      pages += 1;
    } while (cursor && pages < 50);
    const total = await system.ctx.db.models.Payment.countDocuments({ companyId });
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
    expect([...seen].sort().reverse()).toEqual(seen);
    expect(pages).toBe(Math.ceil(total / 2));
  });

  it('rejects unknown query parameters and bad cursors with 400', async () => {
    const token = await tokenFor(callers.admin!);
    for (const query of ['?limit=0', '?limit=1000', '?after=not-an-id', '?sort=amount', '?status=paid']) {
      const response = await fetch(`${system.url}/v1/companies/${companyId}/payments${query}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(response.status).toBe(400);
    }
  });
});
