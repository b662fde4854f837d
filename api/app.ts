import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { RedisClient } from '../platform/redis';
import { ulid } from '../platform/ids';
import type { Principal } from '../domain/access-policy';
import { bodyContainsCardNumber, requestLineContainsCardNumber } from '../domain/card-number';
import type { PaymentGateway } from '../domain/payment-gateway';
import type { Database } from '../models';
import { plainCollection } from '../models/connection';
import { SettingsCache } from '../models/settings-cache';
import type { AppConfig } from '../platform/config';
import type { Logger } from '../platform/logger';
import type { Queues } from '../queues';
import { createAccessGuard } from './access-guard';
import { AuthenticationError, type Authenticator } from './auth';
import { httpRequestDuration } from '../platform/metrics';
import { ApiError, registerErrorHandler } from './errors';
import { registerAuditRoutes } from './routes/audit-events';
import { registerHealthRoutes } from './routes/health';
import { registerPaymentConfigRoutes } from './routes/payment-config';
import { OPERATIONS } from './contracts';
import { registerContractCheck } from './openapi/contract-check';
import { isApiReferenceRoute, registerOpenApiRoutes } from './openapi/routes';
import { registerPaymentMethodRoutes } from './routes/payment-methods';
import { registerPaymentRoutes } from './routes/payments';
import { registerRefundRoutes } from './routes/refunds';
import { registerSubscriptionRoutes } from './routes/subscriptions';
import { registerStripeWebhookRoutes } from './routes/stripe-webhooks';
import { registerWebhookEventRoutes } from './routes/webhook-events';
import { registerWebhookEndpointRoutes } from './routes/webhook-endpoints';
import { enqueueInvoiceRender } from '../queues/invoices.queue';
import { registerInvoiceRoutes } from './routes/invoices';
import { registerInvoiceSettingsRoutes } from './routes/invoice-settings';
import { createAuditBudget } from './audit-budget';
import { budgetSource, createAuthFailureBudget, refuseSpentSource } from './auth-failure-budget';
import { isDashboardRoute, registerDashboard } from './dashboard';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export interface ApiDeps {
  config: Pick<AppConfig, 'env' | 'payments' | 'http' | 'auth' | 'queuePrefix' | 'stripe' | 'dashboard' | 'webhooks'>;
  logger: Logger;
  database: Pick<
    Database,
    'connection' | 'plainClient' | 'models' | 'encryption' | 'auditTrail' | 'invoiceDocuments' | 'documentTokens'
  >;
  /** Verifies the signatures of audit chain anchors. */
  anchorPublicKey: KeyObject;
  queues: Queues;
  redis: RedisClient;
  authenticate: Authenticator;
  /** Only for SetupIntents (a payer's browser needs the client secret now); charges and refunds go through workers. */
  gateway: Pick<PaymentGateway, 'createCustomer' | 'createSetupIntent' | 'retrieveAccountId'>;
}

/**
 * A caller's trace id is kept only in the shapes trace ids have (UUID/hex, ULID):
 * it travels into logs and job payloads, so it must not be able to carry a name or a date.
 */
const REQUEST_ID = /^(?:[0-9a-fA-F-]{16,64}|[0-9A-HJKMNP-TV-Z]{26})$/;
const UNAUTHENTICATED_ROUTES = new Set(['/healthz', '/readyz']);
/** Stripe authenticates each delivery by its signature (verified by the route), not by a bearer token. */
const SIGNED_WEBHOOK_PREFIX = '/v1/webhooks/';

/** By the matched route pattern, not the raw URL, so no crafted path can borrow the exemption. */
function isSignedWebhook(request: FastifyRequest): boolean {
  return request.routeOptions.url?.startsWith(SIGNED_WEBHOOK_PREFIX) ?? false;
}

/** Modern suites only; TLS 1.3 suites are always on and not configurable here. */
const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

function httpsOptions(config: AppConfig['http']) {
  if (!config.tls) return undefined;
  return {
    key: readFileSync(config.tls.keyFile),
    cert: readFileSync(config.tls.certFile),
    minVersion: 'TLSv1.2' as const,
    ciphers: TLS12_CIPHERS,
    honorCipherOrder: true,
  };
}

/**
 * The HTTP ingress: authenticate, authorize, validate, record an intent, enqueue, answer. No gateway calls here,
 * except making a SetupIntent (and its payer's Customer), whose client secret the payer's browser needs at once.
 */
export async function buildApp(deps: ApiDeps): Promise<FastifyInstance> {
  const { http } = deps.config;
  const trustedHops = typeof http.trustProxy === 'number' ? http.trustProxy : 0;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    https: httpsOptions(http) ?? null,
    // A hop count trusts that many proxies nearest to us; further X-Forwarded-For entries are the client's own claims.
    trustProxy:
      typeof http.trustProxy === 'number' ? (_address: string, hop: number) => hop < trustedHops : http.trustProxy,
    bodyLimit: 64 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req_${ulid()}`;
    },
    requestTimeout: 30_000,
    connectionTimeout: 30_000,
  });
  registerErrorHandler(app);
  // Before any route: each must have its operation in api/contracts, and every response is checked against it.
  if (http.contractCheck) registerContractCheck(app, OPERATIONS);
  // Latency by route pattern (never the concrete URL: ids and query strings stay out of the metrics).
  app.addHook('onResponse', async (request, reply) => {
    httpRequestDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  const guard = createAccessGuard({
    auditQueue: deps.queues.audit,
    encryption: deps.database.encryption,
    emergencyWindowSeconds: deps.config.auth.emergencyWindowSeconds,
    withinAuditBudget: createAuditBudget(deps.redis, deps.config.queuePrefix),
  });

  await app.register(helmet, {
    // An API: no HTML to protect with a CSP. HSTS matters wherever https is served or terminated.
    contentSecurityPolicy: false,
    hsts: http.tls || http.trustProxy ? { maxAge: http.hstsMaxAgeSeconds, includeSubDomains: true } : false,
  });

  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    void reply.header('cache-control', 'no-store');
  });

  app.addHook('onRequest', async (request) => {
    // Behind a TLS-terminating proxy: anything it did not receive over https is refused.
    if (http.trustProxy && request.protocol !== 'https' && !UNAUTHENTICATED_ROUTES.has(request.url)) {
      throw new ApiError(403, 'https_required', 'this API is served over https only');
    }
  });

  // Companies and their payment configuration, signing secrets included, from memory while Redis' tokens say current
  // (models/settings-cache.ts): a POST's shredding check and a Stripe delivery's secrets, an MGET each instead of a read.
  const settings = new SettingsCache(deps.database.models, deps.database.documentTokens, {
    keepWebhookSigningSecrets: true,
  });

  const authFailures = createAuthFailureBudget(
    deps.redis,
    deps.config.queuePrefix,
    http.authFailuresPerSourcePerMinute,
  );

  // Per source address, before authentication (a route-level onRequest hook: it runs before the preParsing hook
  // below), so invalid tokens cost a counter increment, not a signature check and an audit append each. A token this
  // process verified within the last 30 s costs neither: its requests are held to the per-holder limit alone, and
  // spare the source's counter (a Redis round trip per request).
  await app.register(rateLimit, {
    hook: 'onRequest',
    max: http.rateLimitPerSourcePerMinute,
    timeWindow: '1 minute',
    redis: deps.redis,
    nameSpace: `${deps.config.queuePrefix}:rate-limit-source:`,
    keyGenerator: (request) => `ip:${budgetSource(request.ip)}`,
    skipOnError: true,
    // Stripe's deliveries come from few addresses in bursts; their forged ones spend the failed-auth budget instead.
    allowList: (request) =>
      UNAUTHENTICATED_ROUTES.has(request.url) ||
      isSignedWebhook(request) ||
      deps.authenticate.verifiedRecently(request.headers.authorization),
    errorResponseBuilder: (_request, context) =>
      new ApiError(429, 'rate_limited', `too many requests; retry after ${context.after}`),
  });

  // Authentication before the body is read: no request reaches a handler (or the body parser) without a valid token.
  app.addHook('preParsing', async (request, reply, payload) => {
    // The dashboard authenticates by its own session cookie (api/dashboard), made from a token verified as here.
    if (
      UNAUTHENTICATED_ROUTES.has(request.url) ||
      isSignedWebhook(request) ||
      isDashboardRoute(request) ||
      isApiReferenceRoute(request)
    )
      return payload;
    try {
      // A source that spent its failed-authentication budget is refused before any token of it is checked; a token
      // this process verified moments ago is not checked again, and needs no look at the budget either.
      request.principal = await deps.authenticate(request.headers.authorization, () =>
        refuseSpentSource(authFailures, request, reply),
      );
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error;
      await authFailures.record(request.ip);
      await guard.auditAuthenticationFailure(request, error.reason);
      throw new ApiError(401, error.reason, 'a valid bearer token is required');
    }
    request.log = request.log.child({ actor: request.principal.subject, companyId: request.principal.companyId });
    return payload;
  });

  // Per token holder, after authentication.
  await app.register(rateLimit, {
    hook: 'preHandler',
    max: http.rateLimitPerMinute,
    timeWindow: '1 minute',
    redis: deps.redis,
    nameSpace: `${deps.config.queuePrefix}:rate-limit:`,
    // An outage of the limiter's store must not take the API down with it.
    keyGenerator: (request) =>
      request.principal ? `${request.principal.companyId}:${request.principal.subject}` : `ip:${request.ip}`,
    skipOnError: true,
    allowList: (request) => UNAUTHENTICATED_ROUTES.has(request.url) || isSignedWebhook(request),
    errorResponseBuilder: (_request, context) =>
      new ApiError(429, 'rate_limited', `too many requests; retry after ${context.after}`),
  });

  app.addHook('preHandler', async (request) => {
    // Card data must never reach us (PCI scope); say what to send instead, and never echo or log the value.
    // Signed webhook bodies are raw bytes from Stripe, which never sends card numbers.
    const idempotencyKey = request.headers['idempotency-key'];
    if (requestLineContainsCardNumber(request.url, typeof idempotencyKey === 'string' ? idempotencyKey : undefined)) {
      throw new ApiError(400, 'card_number_refused', 'send a Stripe PaymentMethod id, never a card number');
    }
    if (isSignedWebhook(request)) return;
    if (request.body !== undefined && bodyContainsCardNumber(request.body)) {
      throw new ApiError(400, 'card_number_refused', 'send a Stripe PaymentMethod id, never a card number');
    }
  });

  registerHealthRoutes(app, { redis: deps.redis, mongo: deps.database.connection });
  await registerOpenApiRoutes(app, { docs: http.docs });
  registerAuditRoutes(app, {
    models: deps.database.models,
    auditTrail: deps.database.auditTrail,
    anchorPublicKey: deps.anchorPublicKey,
    guard,
  });
  registerPaymentConfigRoutes(app, {
    db: deps.database,
    gateway: deps.gateway,
    guard,
    runtime: {
      production: deps.config.env === 'production',
      allowTestKeysInProduction: deps.config.stripe.allowTestKeysInProduction,
    },
  });
  registerRefundRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    maxAmount: deps.config.payments.maxAmount,
    authorize: guard.authorize,
    encryption: deps.database.encryption,
  });
  registerPaymentRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    maxAmount: deps.config.payments.maxAmount,
    authorize: guard.authorize,
    authorizeList: guard.authorizeList,
    encryption: deps.database.encryption,
    intake: {
      company: (companyId) => settings.company(companyId),
      payments: plainCollection(deps.database, deps.database.models.Payment),
    },
  });
  registerPaymentMethodRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    gateway: deps.gateway,
    authorize: guard.authorize,
    authorizeList: guard.authorizeList,
    encryption: deps.database.encryption,
  });
  registerSubscriptionRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    maxAmount: deps.config.payments.maxAmount,
    production: deps.config.env === 'production',
    guard,
  });
  await registerStripeWebhookRoutes(app, {
    db: deps.database,
    settings,
    queues: deps.queues,
    redis: deps.redis,
    keyPrefix: deps.config.queuePrefix,
    authFailures,
  });
  registerInvoiceRoutes(app, {
    models: deps.database.models,
    enqueueRender: (invoiceId, version) =>
      enqueueInvoiceRender(deps.queues.invoices, { invoiceId, ...(version && version > 1 ? { version } : {}) }),
    documents: deps.database.invoiceDocuments,
    encryption: deps.database.encryption,
    guard,
  });
  registerInvoiceSettingsRoutes(app, { models: deps.database.models, encryption: deps.database.encryption, guard });
  await registerDashboard(app, {
    queues: deps.queues,
    redis: deps.redis,
    queuePrefix: deps.config.queuePrefix,
    production: deps.config.env === 'production',
    idleTimeoutSeconds: deps.config.dashboard.idleTimeoutSeconds,
    sessionMaxSeconds: deps.config.dashboard.sessionMaxSeconds,
    authenticate: deps.authenticate,
    encryption: deps.database.encryption,
    auditAuthenticationFailure: guard.auditAuthenticationFailure,
    authFailures,
  });
  registerWebhookEventRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    authorize: guard.authorize,
    encryption: deps.database.encryption,
  });
  registerWebhookEndpointRoutes(app, {
    db: deps.database,
    guard,
    deliveriesQueue: deps.queues['webhook-deliveries'],
    urlRules: { httpsOnly: deps.config.env === 'production', allowLoopback: deps.config.webhooks.allowLoopback },
    retryScheduleMs: deps.config.webhooks.retryScheduleMs,
  });
  return app;
}
