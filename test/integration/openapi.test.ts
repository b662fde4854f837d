import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { undocumentedRoutes } from '../../api/openapi/contract-check';
import { openApiDocument } from '../../api/openapi/document';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

/** Issue 21 §1: the contract, served, committed, and covering every route. */
let system: InProcessSystem;

beforeAll(async () => {
  system = await startInProcessSystem('openapi');
});

afterAll(async () => {
  await system?.close();
});

describe('the OpenAPI contract', () => {
  it('is served at /openapi.json without a token, the same document as the committed openapi.json', async () => {
    const response = await fetch(`${system.url}/openapi.json`);
    expect(response.status).toBe(200);
    const served = await response.json();
    expect(served).toEqual(openApiDocument());
    const committed = JSON.parse(readFileSync(join(__dirname, '..', '..', 'openapi.json'), 'utf8'));
    expect(served).toEqual(committed);
    expect(served).toMatchObject({ openapi: '3.1.0', components: { securitySchemes: { bearer: { type: 'http' } } } });
  });

  it('documents every route the api serves under /v1', () => {
    expect(system.ctx.config.http.contractCheck).toBe(true);
    expect(undocumentedRoutes(system.api.app)).toEqual([]);
    const document = openApiDocument() as { paths: Record<string, Record<string, { operationId: string }>> };
    const ids = Object.values(document.paths).flatMap((path) => Object.values(path).map((o) => o.operationId));
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBeGreaterThanOrEqual(40);
  });

  it('serves an interactive reference at /docs in development, its assets from here', async () => {
    const page = await fetch(`${system.url}/docs/`, { redirect: 'follow' });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    const html = await page.text();
    expect(html).toContain('swagger-ui');
    expect(html).not.toMatch(/https?:\/\/(?:cdn|unpkg|cdnjs)/);
  });

  it('leaves /docs off when API_DOCS=false (production by default), /openapi.json still served', async () => {
    const dark = await startInProcessSystem('openapi-dark', { API_DOCS: 'false' });
    try {
      const token = await dark.token('co_openapi_dark', ['company_admin']);
      const docs = await fetch(`${dark.url}/docs/`, { headers: { authorization: `Bearer ${token}` } });
      expect(docs.status).toBe(404);
      expect(((await docs.json()) as { error: { code: string } }).error.code).toBe('route_not_found');
      expect((await fetch(`${dark.url}/openapi.json`)).status).toBe(200);
    } finally {
      await dark.close();
    }
  });
});
