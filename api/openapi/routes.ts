import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { openApiDocument } from './document';

export const OPENAPI_PATH = '/openapi.json';
export const DOCS_PATH = '/docs';

/** The api reference is public (it holds no data): matched by route pattern, as the dashboard's routes are. */
export function isApiReferenceRoute(request: FastifyRequest): boolean {
  const route = request.routeOptions.url;
  return route === OPENAPI_PATH || route === DOCS_PATH || (route?.startsWith(`${DOCS_PATH}/`) ?? false);
}

/**
 * `/openapi.json`, the document generated from the operations' schemas (the same one committed as openapi.json), and
 * with `docs` an interactive reference of it at `/docs` (Swagger UI, its assets served from here, never a CDN).
 */
export async function registerOpenApiRoutes(app: FastifyInstance, options: { docs: boolean }): Promise<void> {
  const document = openApiDocument();
  app.get(OPENAPI_PATH, async () => document);
  if (!options.docs) return;
  await app.register(swagger, { mode: 'static', specification: { document: document as never } });
  await app.register(swaggerUi, { routePrefix: DOCS_PATH, staticCSP: true });
}
