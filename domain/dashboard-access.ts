import { isPlatformRole, PLATFORM_SCOPE, type PlatformRole, type Principal } from './access-policy';

/**
 * Who may use the queue dashboard, and which of its requests each may make. The queues hold every company's jobs,
 * so only platform roles get in: `platform_ops` reads, `platform_admin` also retries, cleans and promotes.
 * Everything else the board can do (pause, empty, obliterate, add or edit jobs, change schedulers or limits) is
 * refused to everyone: none of it is an operator's job here, and each could lose or forge work.
 */
export type DashboardRole = PlatformRole;

export type DashboardRoleDecision = { allowed: true; role: DashboardRole } | { allowed: false; reason: string };

/** A platform token (company `platform`) holding only platform roles; `platform_admin` wins when it holds both. */
export function decideDashboardRole(principal: Principal): DashboardRoleDecision {
  if (principal.subjectType !== 'user') return { allowed: false, reason: 'user_token_required' };
  const platformRoles = principal.roles.filter(isPlatformRole);
  if (platformRoles.length === 0) return { allowed: false, reason: 'platform_role_required' };
  // A token mixing company and platform roles is refused rather than guessed at.
  if (platformRoles.length !== principal.roles.length) return { allowed: false, reason: 'platform_roles_only' };
  if (principal.companyId !== PLATFORM_SCOPE) return { allowed: false, reason: 'platform_token_required' };
  return { allowed: true, role: platformRoles.includes('platform_admin') ? 'platform_admin' : 'platform_ops' };
}

/** The board's own actions a `platform_admin` may take, by method and route pattern (below the board's prefix). */
export const DASHBOARD_ACTIONS = {
  'PUT /api/queues/:queueName/:jobId/retry': 'retry',
  'PUT /api/queues/:queueName/retry/:queueStatus': 'retry_all',
  'PUT /api/queues/:queueName/:jobId/clean': 'clean',
  'PUT /api/queues/:queueName/clean/:queueStatus': 'clean_all',
  'PUT /api/queues/:queueName/:jobId/promote': 'promote',
  'PUT /api/queues/:queueName/promote': 'promote_all',
} as const;
export type DashboardAction = (typeof DASHBOARD_ACTIONS)[keyof typeof DASHBOARD_ACTIONS];

export type DashboardRequestDecision = { allowed: true; action?: DashboardAction } | { allowed: false; reason: string };

const READS = new Set(['GET', 'HEAD']);

/** Decides one request of a signed-in role: reads for both, the actions above for `platform_admin` only. */
export function decideDashboardRequest(role: DashboardRole, method: string, route: string): DashboardRequestDecision {
  if (READS.has(method)) return { allowed: true };
  if (role !== 'platform_admin') return { allowed: false, reason: 'read_only_role' };
  const action = (DASHBOARD_ACTIONS as Record<string, DashboardAction>)[`${method} ${route}`];
  return action ? { allowed: true, action } : { allowed: false, reason: 'dashboard_action_not_allowed' };
}
