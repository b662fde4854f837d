/**
 * Who may do what. Roles are company-wide or limited to the offices named in
 * the token. Service tokens (upstream apps) carry explicit permissions instead.
 */
export const PERMISSIONS = ['payments:create', 'payments:read'] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLES = [
  'company_admin',
  'billing_manager',
  'office_manager',
  'billing_clerk',
  'auditor',
  'ops',
  'service',
] as const;
export type Role = (typeof ROLES)[number];

const ROLE_PERMISSIONS: Record<Exclude<Role, 'service'>, readonly Permission[]> = {
  company_admin: ['payments:create', 'payments:read'],
  billing_manager: ['payments:create', 'payments:read'],
  office_manager: ['payments:create', 'payments:read'],
  billing_clerk: ['payments:create', 'payments:read'],
  auditor: [],
  ops: [],
};

const OFFICE_SCOPED_ROLES: ReadonlySet<Role> = new Set(['office_manager', 'billing_clerk']);

export interface Principal {
  subject: string;
  subjectType: 'user' | 'service';
  companyId: string;
  roles: Role[];
  /** For office-scoped roles: the offices they act for. */
  officeIds: string[];
  /** For service tokens: what the upstream app was granted. */
  permissions: Permission[];
}

export type AccessDecision = { allowed: true; officeScoped: boolean } | { allowed: false; reason: string };

/**
 * Decides one request. `officeId` is the office the request acts on, if any.
 * A principal with only office-scoped roles must name one of its offices.
 */
export function decideAccess(
  principal: Principal,
  permission: Permission,
  target: { companyId: string; officeId?: string },
): AccessDecision {
  if (principal.companyId !== target.companyId) return { allowed: false, reason: 'company_out_of_scope' };
  const granting = principal.roles.filter((role) =>
    role === 'service' ? principal.permissions.includes(permission) : ROLE_PERMISSIONS[role].includes(permission),
  );
  if (granting.length === 0) return { allowed: false, reason: 'permission_missing' };
  const companyWide = granting.some((role) => !OFFICE_SCOPED_ROLES.has(role));
  if (companyWide) return { allowed: true, officeScoped: false };
  if (!target.officeId) return { allowed: false, reason: 'office_required' };
  if (!principal.officeIds.includes(target.officeId)) return { allowed: false, reason: 'office_out_of_scope' };
  return { allowed: true, officeScoped: true };
}
