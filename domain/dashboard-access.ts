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

/** What a request names: the queue, the state a bulk action targets, and (for one job's clean) the job's state. */
export interface DashboardTarget {
  queueName?: string;
  queueStatus?: string;
  jobState?: string;
}

const READS = new Set(['GET', 'HEAD']);
/**
 * Reads that show how the platform is wired (Redis INFO: version, memory, clients; the workers' addresses) rather
 * than what the queues hold: `platform_admin` only.
 */
const ADMIN_READS = new Set(['/api/redis/stats', '/api/queues/:queueName/workers']);
/**
 * Only finished jobs may be cleaned: a waiting, delayed, paused or prioritized job is work not yet done (a payment
 * outcome, an invoice, an audit event), and removing it loses that work.
 */
export const CLEANABLE_STATES: ReadonlySet<string> = new Set(['completed', 'failed']);
/** Its jobs are audit events not yet appended to the trail, and the audit queue has no outbox: nothing is cleaned. */
export const UNCLEANABLE_QUEUES: ReadonlySet<string> = new Set(['audit']);
/** The most jobs one board page may load: a larger page is refused (the board's own settings stay below it). */
export const MAX_JOBS_PER_PAGE = 100;

/** Decides one request of a signed-in role: reads for both, the actions above for `platform_admin` only. */
export function decideDashboardRequest(
  role: DashboardRole,
  method: string,
  route: string,
  target: DashboardTarget = {},
): DashboardRequestDecision {
  if (READS.has(method)) {
    if (ADMIN_READS.has(route) && role !== 'platform_admin') return { allowed: false, reason: 'platform_admin_only' };
    return { allowed: true };
  }
  if (role !== 'platform_admin') return { allowed: false, reason: 'read_only_role' };
  const action = (DASHBOARD_ACTIONS as Record<string, DashboardAction>)[`${method} ${route}`];
  if (!action) return { allowed: false, reason: 'dashboard_action_not_allowed' };
  if (action === 'clean' || action === 'clean_all') {
    if (target.queueName !== undefined && UNCLEANABLE_QUEUES.has(target.queueName)) {
      return { allowed: false, reason: 'queue_not_cleanable' };
    }
    const state = action === 'clean_all' ? target.queueStatus : target.jobState;
    if (state === undefined || !CLEANABLE_STATES.has(state))
      return { allowed: false, reason: 'only_finished_jobs_cleanable' };
  }
  return { allowed: true, action };
}

/** A board page size that is too large to load, or undefined when the query asks for none or an acceptable one. */
export function refusedPageSize(query: unknown): string | undefined {
  const asked = (query as { jobsPerPage?: unknown } | undefined)?.jobsPerPage;
  if (asked === undefined) return undefined;
  const size = Number(asked);
  return Number.isInteger(size) && size >= 1 && size <= MAX_JOBS_PER_PAGE ? undefined : 'jobs_per_page_too_large';
}
