import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { ulid } from 'ulid';
import type { Principal } from '../domain/access-policy';
import type { Database } from '../models';
import type { AppConfig } from '../platform/config';
import type { Logger } from '../platform/logger';
import type { Queues } from '../queues';
import { AuthenticationError, type Authenticator } from './auth';
import { ApiError, registerErrorHandler } from './errors';
import { registerHealthRoutes } from './routes/health';
import { registerPaymentRoutes } from './routes/payments';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

export interface ApiDeps {
  config: Pick<AppConfig, 'payments'>;
  logger: Logger;
  database: Pick<Database, 'connection' | 'models'>;
  queues: Queues;
  redis: Redis;
  authenticate: Authenticator;
}

const REQUEST_ID = /^[A-Za-z0-9_.-]{1,100}$/;

/** The HTTP ingress: authenticate, authorize, validate, record an intent, enqueue, answer. No gateway calls here. */
export function buildApp(deps: ApiDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: 64 * 1024,
    // A caller's request id is kept when it is safe to log; otherwise we make one.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : `req_${ulid()}`;
    },
    requestTimeout: 30_000,
  });
  registerErrorHandler(app);

  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });

  // No request reaches a /v1 handler without a valid token.
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/v1/')) return;
    try {
      request.principal = await deps.authenticate(request.headers.authorization);
    } catch (error) {
      if (error instanceof AuthenticationError) {
        throw new ApiError(401, error.reason, 'a valid bearer token is required');
      }
      throw error;
    }
    request.log = request.log.child({ actor: request.principal.subject, companyId: request.principal.companyId });
  });

  registerHealthRoutes(app, { redis: deps.redis, mongo: deps.database.connection });
  registerPaymentRoutes(app, {
    models: deps.database.models,
    queues: deps.queues,
    maxAmount: deps.config.payments.maxAmount,
  });
  return app;
}
