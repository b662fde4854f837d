import { decideAccess, type Principal } from '../../domain/access-policy';

const base: Principal = {
  subject: 'usr-1',
  subjectType: 'user',
  companyId: 'co_a',
  roles: [],
  officeIds: [],
  permissions: [],
};

describe('access policy for payments', () => {
  // Expected decisions written out literally, not derived from the policy table.
  it.each([
    ['company_admin', 'payments:create', undefined, 'allow'],
    ['billing_manager', 'payments:create', 'off_1', 'allow'],
    ['billing_clerk', 'payments:create', 'off_1', 'allow'],
    ['billing_clerk', 'payments:create', 'off_2', 'office_out_of_scope'],
    ['billing_clerk', 'payments:create', undefined, 'office_required'],
    ['office_manager', 'payments:read', 'off_1', 'allow'],
    ['auditor', 'payments:create', undefined, 'permission_missing'],
    ['ops', 'payments:read', undefined, 'permission_missing'],
  ] as const)('%s %s (office %s) → %s', (role, permission, officeId, expected) => {
    const decision = decideAccess({ ...base, roles: [role], officeIds: ['off_1'] }, permission, {
      companyId: 'co_a',
      officeId,
    });
    expect(decision.allowed ? 'allow' : decision.reason).toBe(expected);
  });

  it('never lets a token act for another company', () => {
    const admin = { ...base, roles: ['company_admin' as const] };
    expect(decideAccess(admin, 'payments:read', { companyId: 'co_b' })).toEqual({
      allowed: false,
      reason: 'company_out_of_scope',
    });
  });

  it('gives service tokens exactly the permissions they carry', () => {
    const service: Principal = { ...base, subjectType: 'service', roles: ['service'], permissions: ['payments:read'] };
    expect(decideAccess(service, 'payments:read', { companyId: 'co_a' }).allowed).toBe(true);
    expect(decideAccess(service, 'payments:create', { companyId: 'co_a' })).toEqual({
      allowed: false,
      reason: 'permission_missing',
    });
  });
});
