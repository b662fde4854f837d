import { decideAccess, type AccessContext, type Principal } from '../../domain/access-policy';

const now = new Date('2026-11-26T12:00:00Z');
const issuedAt = now.getTime() / 1000 - 60;
const base: Principal = {
  subject: 'usr-1',
  subjectType: 'user',
  companyId: 'co_a',
  roles: [],
  officeIds: [],
  permissions: [],
  issuedAt,
};
const context: AccessContext = { now, emergencyWindowSeconds: 600 };

describe('access policy', () => {
  // Expected decisions written out literally, not derived from the policy table.
  it.each([
    ['company_admin', 'payments:create', undefined, 'allow'],
    ['company_admin', 'payment_config:write', undefined, 'allow'],
    ['billing_manager', 'payments:create', 'off_1', 'allow'],
    ['billing_manager', 'payment_config:write', undefined, 'permission_missing'],
    ['billing_clerk', 'payments:create', 'off_1', 'allow'],
    ['billing_clerk', 'payments:create', 'off_2', 'office_out_of_scope'],
    ['billing_clerk', 'payments:create', undefined, 'office_required'],
    ['billing_clerk', 'refunds:create', 'off_1', 'permission_missing'],
    ['office_manager', 'payments:read', 'off_1', 'allow'],
    ['auditor', 'audit:read', undefined, 'allow'],
    ['auditor', 'payments:create', undefined, 'permission_missing'],
    ['auditor', 'payment_config:read', undefined, 'permission_missing'],
    ['ops', 'dashboard:view', undefined, 'allow'],
    ['ops', 'payments:read', undefined, 'permission_missing'],
  ] as const)('%s %s (office %s) → %s', (role, permission, officeId, expected) => {
    const decision = decideAccess(
      { ...base, roles: [role], officeIds: ['off_1'] },
      permission,
      { companyId: 'co_a', officeId },
      context,
    );
    expect(decision.allowed ? 'allow' : decision.reason).toBe(expected);
  });

  it('never lets a token act for another company', () => {
    const admin = { ...base, roles: ['company_admin' as const] };
    expect(decideAccess(admin, 'payments:read', { companyId: 'co_b' }, context)).toEqual({
      allowed: false,
      reason: 'company_out_of_scope',
    });
  });

  it('gives service tokens exactly the permissions they carry', () => {
    const service: Principal = { ...base, subjectType: 'service', roles: ['service'], permissions: ['payments:read'] };
    expect(decideAccess(service, 'payments:read', { companyId: 'co_a' }, context).allowed).toBe(true);
    expect(decideAccess(service, 'payments:create', { companyId: 'co_a' }, context)).toEqual({
      allowed: false,
      reason: 'permission_missing',
    });
  });

  describe('emergency access', () => {
    const responder = { ...base, roles: ['emergency_access' as const] };
    const reason = 'Patient in ER, billing hold must be checked now';

    it('needs a stated reason', () => {
      expect(decideAccess(responder, 'payments:read', { companyId: 'co_a' }, context)).toEqual({
        allowed: false,
        reason: 'access_reason_required',
      });
      expect(
        decideAccess(responder, 'payments:read', { companyId: 'co_a' }, { ...context, accessReason: 'because' }),
      ).toEqual({ allowed: false, reason: 'access_reason_required' });
    });

    it('reads across offices with a reason, flagged as emergency', () => {
      expect(
        decideAccess(
          responder,
          'payments:read',
          { companyId: 'co_a', officeId: 'off_9' },
          { ...context, accessReason: reason },
        ),
      ).toEqual({ allowed: true, officeScoped: false, emergency: true });
    });

    it('expires a limited time after the token was issued', () => {
      const old = { ...responder, issuedAt: now.getTime() / 1000 - 601 };
      expect(decideAccess(old, 'payments:read', { companyId: 'co_a' }, { ...context, accessReason: reason })).toEqual({
        allowed: false,
        reason: 'emergency_access_expired',
      });
    });

    it('never writes: no payments, no configuration', () => {
      for (const permission of ['payments:create', 'payment_config:write', 'refunds:create'] as const) {
        expect(
          decideAccess(responder, permission, { companyId: 'co_a' }, { ...context, accessReason: reason }).allowed,
        ).toBe(false);
      }
    });
  });
});
