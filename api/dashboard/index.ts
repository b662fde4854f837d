import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Queue } from 'bullmq';
import type { RedisClient } from '../../platform/redis';
import { PLATFORM_AUDIT_SCOPE } from '../../domain/audit-actions';
import {
  decideDashboardRequest,
  decideDashboardRole,
  refusedPageSize,
  type DashboardAction,
  type DashboardTarget,
} from '../../domain/dashboard-access';
import { readOnlyBoardAnswer, shownBoardAnswer } from '../../domain/dashboard-view';
import type { FieldEncryption } from '../../models/encryption';
import type { Queues } from '../../queues';
import { AuthenticationError, type Authenticator } from '../auth';
import type { AuthFailureBudget } from '../auth-failure-budget';
import { auditableId, createDashboardAudit, type DashboardAudit } from './audit';
import { createBoard } from './board';
import {
  clearSessionCookies,
  cookieValue,
  cookieValues,
  CSRF_COOKIE,
  cookiesAreSecure,
  CSRF_HEADER,
  isSameOrigin,
  sessionCookieName,
  setSessionCookies,
} from './cookies';
import { BOARD_CSP, isMessageCode, PAGE_CSP, signInPage, signOutPage, type MessageCode } from './pages';
import { createSessionStore, sameSecret, type DashboardSession, type SessionStore } from './session';

/** Where the queue dashboard lives: its sign-in pages and Bull Board below it. */
export const DASHBOARD_PATH = '/admin/queues';

export function isDashboardRoute(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return route === DASHBOARD_PATH || (route?.startsWith(`${DASHBOARD_PATH}/`) ?? false);
}

export interface DashboardDeps {
  queues: Queues;
  redis: RedisClient;
  queuePrefix: string;
  production: boolean;
  idleTimeoutSeconds: number;
  sessionMaxSeconds: number;
  /** The api's own token verification: a dashboard token is checked exactly like an API token. */
  authenticate: Authenticator;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  /** The api's (budgeted) auth.failed audit, for tokens that do not verify. */
  auditAuthenticationFailure(request: FastifyRequest, reason: string): Promise<void>;
  /** The api's failed-authentication budget per source: a token that does not verify spends it. */
  authFailures: AuthFailureBudget;
}

declare module 'fastify' {
  interface FastifyRequest {
    dashboard?: { token: string; session: DashboardSession; action?: DashboardAction };
  }
}

const FORM_BODY_LIMIT = 16 * 1024;

function sendPage(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply.code(status).header('content-type', 'text/html; charset=utf-8').send(html);
}

/** The route pattern below the dashboard's path (`/api/queues/:queueName/:jobId/retry`). */
function boardRoute(request: FastifyRequest): string {
  return (request.routeOptions.url ?? '').slice(DASHBOARD_PATH.length) || '/';
}

function formField(request: FastifyRequest, name: string): string | undefined {
  const value = (request.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

/**
 * The queue dashboard at /admin/queues: a sign-in page that exchanges a platform token for a session cookie, and
 * Bull Board behind it, with read-only and admin roles, CSRF protection on every state-changing request, an idle
 * timeout, and every sign-in, sign-out, action and refusal in the platform audit trail.
 */
export async function registerDashboard(app: FastifyInstance, deps: DashboardDeps): Promise<void> {
  const store = createSessionStore(deps.redis, deps.queuePrefix, {
    idleSeconds: deps.idleTimeoutSeconds,
    maxSeconds: deps.sessionMaxSeconds,
  });
  const audit = createDashboardAudit({ auditQueue: deps.queues.audit, encryption: deps.encryption });
  const cookieOptions = (request: FastifyRequest) => ({
    path: DASHBOARD_PATH,
    secure: cookiesAreSecure(request, deps.production),
  });

  await app.register(
    async (scope) => {
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
        (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
      );
      scope.addHook('onSend', async (request, reply) => {
        // Helmet's no-referrer would make browsers send `Origin: null` on our own posts, which the origin check refuses.
        void reply.header('referrer-policy', 'same-origin');
        void reply.header('content-security-policy', boardRoute(request).startsWith('/sign-') ? PAGE_CSP : BOARD_CSP);
      });
      scope.addHook('onRequest', async (request, reply) => {
        // A cookie sent twice (one planted beside ours) is ambiguous: refused rather than guessed at.
        const session = cookieValues(request, sessionCookieName(cookieOptions(request).secure));
        if (session.length > 1 || cookieValues(request, CSRF_COOKIE).length > 1) {
          await audit(request, {
            action: 'dashboard.denied',
            outcome: 'denied',
            actor: { type: 'anonymous', id: 'anonymous' },
            resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
            reason: 'duplicate_cookie',
          });
          return sendPage(reply, 400, signInPage(DASHBOARD_PATH, 'request_refused'));
        }
      });
      registerSignInRoutes(scope, deps, store, audit, cookieOptions);
      await scope.register(async (board) => {
        board.addHook('onRequest', requireSession(deps, store, audit, cookieOptions));
        board.addHook('onResponse', async (request, reply) => {
          const action = request.dashboard?.action;
          if (action && reply.statusCode >= 300) {
            await audit(request, { ...actionEvent(request, action), outcome: 'failure', reason: `${action}_failed` });
          }
        });
        board.addHook('preSerialization', async (request, _reply, payload) => {
          const route = boardRoute(request);
          if (!route.startsWith('/api/')) return payload;
          // Job logs are free text; our workers write none, and none is shown.
          if (route === '/api/queues/:queueName/:jobId/logs') return [];
          const shown = shownBoardAnswer(payload);
          return request.dashboard?.session.role === 'platform_admin' ? shown : readOnlyBoardAnswer(shown);
        });
        await board.register(createBoard(deps.queues, DASHBOARD_PATH).registerPlugin());
      });
    },
    { prefix: DASHBOARD_PATH },
  );
}

function actor(session: DashboardSession) {
  return { type: 'user' as const, id: session.subject, roles: [session.role] };
}

function actionEvent(request: FastifyRequest, action: DashboardAction) {
  const params = request.params as { queueName?: string; jobId?: string; queueStatus?: string };
  const queue = auditableId(params.queueName ?? 'unknown');
  return {
    action: 'dashboard.action' as const,
    actor: actor(request.dashboard!.session),
    resource: params.jobId
      ? { type: 'queue_job', id: auditableId(`${queue}|${params.jobId}`) }
      : { type: 'queue', id: queue },
    reason: params.queueStatus ? `${action}_${auditableId(params.queueStatus)}`.slice(0, 64) : action,
  };
}

function registerSignInRoutes(
  scope: FastifyInstance,
  deps: DashboardDeps,
  store: SessionStore,
  audit: DashboardAudit,
  cookieOptions: (request: FastifyRequest) => { path: string; secure: boolean },
): void {
  const signIn = (message?: MessageCode) => signInPage(DASHBOARD_PATH, message);
  const anonymous = { type: 'anonymous' as const, id: 'anonymous' };

  scope.get('/sign-in', async (request, reply) => {
    const token = cookieValue(request, sessionCookieName(cookieOptions(request).secure));
    if (token && (await store.find(token))) return reply.redirect(DASHBOARD_PATH, 303);
    const message = (request.query as { message?: unknown }).message;
    return sendPage(reply, 200, signIn(isMessageCode(message) ? message : undefined));
  });

  scope.post('/sign-in', async (request, reply) => {
    if (!isSameOrigin(request)) {
      await audit(request, {
        action: 'dashboard.denied',
        outcome: 'denied',
        actor: anonymous,
        resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
        reason: 'origin_mismatch',
      });
      return sendPage(reply, 403, signIn('request_refused'));
    }
    const retryAfter = await deps.authFailures.retryAfter(request.ip);
    if (retryAfter !== undefined) {
      void reply.header('retry-after', String(retryAfter));
      return sendPage(reply, 429, signIn('token_refused'));
    }
    let principal;
    try {
      principal = await deps.authenticate(`Bearer ${(formField(request, 'token') ?? '').trim()}`);
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error;
      await deps.authFailures.record(request.ip);
      await deps.auditAuthenticationFailure(request, error.reason);
      return sendPage(reply, 401, signIn('token_refused'));
    }
    const decision = decideDashboardRole(principal);
    if (!decision.allowed) {
      await audit(request, {
        action: 'dashboard.denied',
        outcome: 'denied',
        actor: { type: principal.subjectType, id: principal.subject, roles: principal.roles },
        resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
        reason: decision.reason,
      });
      return sendPage(reply, 403, signIn('role_refused'));
    }
    // A sign-in token works once (its jti), and production wants tokens that have one.
    const reuse = !principal.tokenId
      ? deps.production
        ? 'token_id_missing'
        : undefined
      : (await store.claimSignInToken(principal.tokenId, (principal.expiresAt ?? 0) * 1000))
        ? undefined
        : 'token_reused';
    if (reuse) {
      await deps.authFailures.record(request.ip);
      await audit(request, {
        action: 'dashboard.denied',
        outcome: 'denied',
        actor: { type: principal.subjectType, id: principal.subject, roles: principal.roles },
        resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
        reason: reuse,
      });
      return sendPage(reply, 401, signIn('token_refused'));
    }
    const { token, session } = await store.create(principal.subject, decision.role);
    const audited = await audit(request, {
      action: 'dashboard.signed_in',
      outcome: 'success',
      actor: actor(session),
      resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
    });
    // A sign-in that cannot be recorded does not happen.
    if (!audited) {
      await store.destroy(token);
      return sendPage(reply, 503, signIn('audit_unavailable'));
    }
    setSessionCookies(
      reply,
      { token, csrf: session.csrf, maxAgeSeconds: deps.sessionMaxSeconds },
      cookieOptions(request),
    );
    return reply.redirect(DASHBOARD_PATH, 303);
  });

  scope.get('/sign-out', async (request, reply) => {
    const token = cookieValue(request, sessionCookieName(cookieOptions(request).secure));
    const session = token ? await store.find(token) : undefined;
    if (!session) return reply.redirect(`${DASHBOARD_PATH}/sign-in?message=session_ended`, 303);
    return sendPage(reply, 200, signOutPage(DASHBOARD_PATH, session.csrf));
  });

  scope.post('/sign-out', async (request, reply) => {
    const token = cookieValue(request, sessionCookieName(cookieOptions(request).secure));
    const session = token ? await store.find(token) : undefined;
    clearSessionCookies(reply, cookieOptions(request));
    if (!token || !session) return reply.redirect(`${DASHBOARD_PATH}/sign-in?message=signed_out`, 303);
    const given = formField(request, 'csrf') ?? request.headers[CSRF_HEADER];
    if (!isSameOrigin(request) || !sameSecret(typeof given === 'string' ? given : undefined, session.csrf)) {
      await audit(request, {
        action: 'dashboard.denied',
        outcome: 'denied',
        actor: actor(session),
        resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
        reason: isSameOrigin(request) ? 'csrf_token_invalid' : 'origin_mismatch',
      });
      // The cookies are cleared anyway: a forged sign-out can at worst sign out this browser.
      return sendPage(reply, 403, signIn('request_refused'));
    }
    await store.destroy(token);
    // Signing out always works; the event is best effort (a failure is logged).
    await audit(request, {
      action: 'dashboard.signed_out',
      outcome: 'success',
      actor: actor(session),
      resource: { type: 'dashboard', id: PLATFORM_AUDIT_SCOPE },
    });
    return reply.redirect(`${DASHBOARD_PATH}/sign-in?message=signed_out`, 303);
  });
}

/** A short fingerprint of a read, to tell the board's polls (repeats) from a person's reads (new ones). */
function viewOf(request: FastifyRequest): string {
  return createHash('sha256').update(request.url).digest('hex').slice(0, 16);
}

function requireSession(
  deps: DashboardDeps,
  store: SessionStore,
  audit: DashboardAudit,
  cookieOptions: (request: FastifyRequest) => { path: string; secure: boolean },
) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    const route = boardRoute(request);
    const token = cookieValue(request, sessionCookieName(cookieOptions(request).secure));
    const session = token ? await store.find(token) : undefined;
    if (!token || !session) {
      if (token) clearSessionCookies(reply, cookieOptions(request));
      if (request.method === 'GET' && !route.startsWith('/api/') && !route.startsWith('/static/')) {
        const ended = token ? '?message=session_ended' : '';
        return reply.redirect(`${DASHBOARD_PATH}/sign-in${ended}`, 303);
      }
      return reply
        .code(401)
        .send({ error: { code: 'dashboard_session_required', message: 'sign in at /admin/queues/sign-in' } });
    }
    request.dashboard = { token, session };

    if (request.method !== 'GET' && request.method !== 'HEAD') {
      const given = request.headers[CSRF_HEADER];
      const refusal = !isSameOrigin(request)
        ? 'origin_mismatch'
        : !sameSecret(typeof given === 'string' ? given : undefined, session.csrf)
          ? 'csrf_token_invalid'
          : undefined;
      const decision = refusal
        ? ({ allowed: false, reason: refusal } as const)
        : decideDashboardRequest(session.role, request.method, route, await targetOf(deps.queues, request, route));
      if (!decision.allowed) return refuse(request, reply, audit, session, route, decision.reason);
      if (decision.action) {
        request.dashboard.action = decision.action;
        // An action that cannot be recorded is not taken.
        if (!(await audit(request, { ...actionEvent(request, decision.action), outcome: 'success' }))) {
          request.dashboard.action = undefined;
          return reply
            .code(503)
            .send({ error: { code: 'audit_unavailable', message: 'this action cannot be recorded right now' } });
        }
      }
      await store.touch(token, session);
      return;
    }
    const read = decideDashboardRequest(session.role, request.method, route);
    const refused = read.allowed ? refusedPageSize(request.query) : read.reason;
    if (refused) return refuse(request, reply, audit, session, route, refused);
    // A page load is use; so is a read the page has not made before (another queue, a job); a repeat is a poll.
    if (!route.startsWith('/api/') && !route.startsWith('/static/')) await store.touch(token, session);
    else if (route.startsWith('/api/')) {
      const view = viewOf(request);
      if (!session.views.includes(view)) await store.touch(token, session, view);
    }
  };
}

async function refuse(
  request: FastifyRequest,
  reply: FastifyReply,
  audit: DashboardAudit,
  session: DashboardSession,
  route: string,
  reason: string,
): Promise<FastifyReply> {
  await audit(request, {
    action: 'dashboard.denied',
    outcome: 'denied',
    actor: actor(session),
    resource: { type: 'dashboard_route', id: auditableId(`${request.method}${route}`) },
    reason,
  });
  return reply.code(403).send({ error: { code: reason, message: 'not allowed on this dashboard' } });
}

/** The queue, bulk state and (for one job's clean) the job's current state a request names. */
async function targetOf(queues: Queues, request: FastifyRequest, route: string): Promise<DashboardTarget> {
  const params = request.params as { queueName?: string; jobId?: string; queueStatus?: string };
  const target: DashboardTarget = { queueName: params.queueName, queueStatus: params.queueStatus };
  if (route === '/api/queues/:queueName/:jobId/clean' && params.queueName && params.jobId) {
    const queue = (queues as Record<string, Queue | undefined>)[params.queueName];
    if (queue) target.jobState = await queue.getJobState(params.jobId);
  }
  return target;
}
