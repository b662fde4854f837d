/**
 * Who may do what: one table of permissions × roles. Roles are company-wide or
 * limited to the offices named in the token. Service tokens (upstream apps)
 * carry explicit permissions instead of a role's. Emergency access
 * (break-glass) reads across the company, but only with a stated reason, only
 * for a short time after the token was issued, and always audited.
 */
export const PERMISSIONS = [
  'payments:create',
  'payments:read',
  'refunds:create',
  'payment_config:read',
  'payment_config:write',
  'subscriptions:read',
  'subscriptions:manage',
  'invoices:read',
  'invoices:download',
  'audit:read',
  'webhook_events:replay',
  'dashboard:view',
  'webhooks:manage',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLES = [
  'company_admin',
  'billing_manager',
  'office_manager',
  'billing_clerk',
  'auditor',
  'ops',
  'emergency_access',
  'service',
  'platform_ops',
  'platform_admin',
] as const;
export type Role = (typeof ROLES)[number];

/**
 * Roles of the platform's own operators, not of any company: they act on what all companies share (the queue
 * dashboard) and grant no company permission. A token for them names the platform, never a company, as its company
 * (`company_id: "platform"`); domain/dashboard-access.ts decides what they may do there.
 */
export const PLATFORM_ROLES = ['platform_ops', 'platform_admin'] as const satisfies readonly Role[];
export type PlatformRole = (typeof PLATFORM_ROLES)[number];
/** What a platform token carries as its company: the platform's own scope (its audit trail has the same name). */
export const PLATFORM_SCOPE = 'platform';

export function isPlatformRole(role: Role): role is PlatformRole {
  return (PLATFORM_ROLES as readonly Role[]).includes(role);
}

/**
 * The policy table of company roles. `service` is absent: a service token's permissions are in the token. Platform
 * roles are absent: they grant no company permission.
 */
export const ROLE_PERMISSIONS: Readonly<Record<Exclude<Role, 'service' | PlatformRole>, readonly Permission[]>> = {
  company_admin: [
    'payments:create',
    'payments:read',
    'refunds:create',
    'payment_config:read',
    'payment_config:write',
    'subscriptions:read',
    'subscriptions:manage',
    'invoices:read',
    'invoices:download',
    'audit:read',
    'webhook_events:replay',
    // Where an upstream app is told about changes: held with payment configuration (who may point money events at a URL).
    'webhooks:manage',
  ],
  billing_manager: [
    'payments:create',
    'payments:read',
    'refunds:create',
    'payment_config:read',
    'subscriptions:read',
    'subscriptions:manage',
    'invoices:read',
    'invoices:download',
  ],
  office_manager: [
    'payments:create',
    'payments:read',
    'refunds:create',
    'subscriptions:read',
    'subscriptions:manage',
    'invoices:read',
    'invoices:download',
  ],
  billing_clerk: ['payments:create', 'payments:read', 'subscriptions:read', 'invoices:read', 'invoices:download'],
  auditor: ['audit:read', 'invoices:read'],
  ops: ['dashboard:view'],
  emergency_access: ['payments:read', 'subscriptions:read', 'invoices:read', 'invoices:download'],
};

export const OFFICE_SCOPED_ROLES: ReadonlySet<Role> = new Set(['office_manager', 'billing_clerk']);

export interface Principal {
  subject: string;
  subjectType: 'user' | 'service';
  companyId: string;
  roles: Role[];
  /** For office-scoped roles: the offices they act for. */
  officeIds: string[];
  /** For service tokens: what the upstream app was granted. */
  permissions: Permission[];
  /** When the token was issued (seconds since the epoch). */
  issuedAt: number;
  /** When the token expires (seconds since the epoch). */
  expiresAt?: number;
  /** The token's own id (`jti`), where the identity provider sets one. */
  tokenId?: string;
}

export interface AccessContext {
  /** The X-Access-Reason header, required for emergency access. */
  accessReason?: string;
  now: Date;
  emergencyWindowSeconds: number;
}

export type AccessDecision =
  { allowed: true; officeScoped: boolean; emergency: boolean } | { allowed: false; reason: string };

export const ACCESS_REASON_MIN_LENGTH = 10;

function grants(principal: Principal, role: Role, permission: Permission): boolean {
  if (isPlatformRole(role)) return false;
  return role === 'service' ? principal.permissions.includes(permission) : ROLE_PERMISSIONS[role].includes(permission);
}

/**
 * Decides one request. `officeId` is the office the request acts on, if any.
 * A principal whose only granting roles are office-scoped must name one of its offices.
 */
export function decideAccess(
  principal: Principal,
  permission: Permission,
  target: { companyId: string; officeId?: string },
  context: AccessContext,
): AccessDecision {
  // A platform token is no company's, even if a company were ever called "platform".
  if (principal.companyId !== target.companyId || principal.companyId === PLATFORM_SCOPE) {
    return { allowed: false, reason: 'company_out_of_scope' };
  }
  const granting = principal.roles.filter((role) => grants(principal, role, permission));
  if (granting.length === 0) return { allowed: false, reason: 'permission_missing' };

  const regular = granting.filter((role) => role !== 'emergency_access');
  if (regular.length === 0) {
    if ((context.accessReason?.trim().length ?? 0) < ACCESS_REASON_MIN_LENGTH) {
      return { allowed: false, reason: 'access_reason_required' };
    }
    const ageSeconds = context.now.getTime() / 1000 - principal.issuedAt;
    if (ageSeconds > context.emergencyWindowSeconds) return { allowed: false, reason: 'emergency_access_expired' };
    return { allowed: true, officeScoped: false, emergency: true };
  }

  if (regular.some((role) => !OFFICE_SCOPED_ROLES.has(role))) {
    return { allowed: true, officeScoped: false, emergency: false };
  }
  if (!target.officeId) return { allowed: false, reason: 'office_required' };
  if (!principal.officeIds.includes(target.officeId)) return { allowed: false, reason: 'office_out_of_scope' };
  return { allowed: true, officeScoped: true, emergency: false };
}

export type ListAccessDecision =
  | { allowed: true; emergency: boolean; /** undefined: every office of the company */ officeIds?: string[] }
  | { allowed: false; reason: string };

/**
 * For list routes without an office filter: company-wide roles see everything,
 * office-scoped roles see their own offices only (instead of being refused).
 */
export function decideListAccess(
  principal: Principal,
  permission: Permission,
  target: { companyId: string; officeId?: string },
  context: AccessContext,
): ListAccessDecision {
  const decision = decideAccess(principal, permission, target, context);
  if (decision.allowed)
    return { allowed: true, emergency: decision.emergency, officeIds: target.officeId ? [target.officeId] : undefined };
  if (decision.reason === 'office_required') return { allowed: true, emergency: false, officeIds: principal.officeIds };
  return decision;
}
