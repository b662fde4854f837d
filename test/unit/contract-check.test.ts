import Fastify from 'fastify';
import { z } from 'zod';
import { registerContractCheck, undocumentedRoutes } from '../../api/openapi/contract-check';
import { openApiDocument } from '../../api/openapi/document';
import { failure, type OperationSpec } from '../../api/openapi/spec';

/** The contract check on a small Fastify app of its own: what passes, what becomes a 500 contract_violation. */
const operations: OperationSpec[] = [
  {
    method: 'get',
    route: '/v1/things/:id',
    operationId: 'getThing',
    summary: 'A thing',
    tag: 'Things',
    params: z.strictObject({ id: z.string() }),
    responses: {
      200: { description: 'The thing.', schema: z.strictObject({ id: z.string(), count: z.number().int() }) },
      404: failure('No such thing.', 'thing_not_found'),
    },
  },
];

async function appAnswering(status: number, body: unknown) {
  const app = Fastify();
  registerContractCheck(app, operations);
  app.get('/v1/things/:id', async (_request, reply) => reply.status(status).send(body));
  app.get('/v1/other', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  apps.push(app);
  return {
    app,
    // Over a real connection (Fastify's inject needs an ES module jest cannot load on Node 20).
    get: async (path: string) => {
      const response = await fetch(`${url}${path}`);
      return { statusCode: response.status, body: (await response.json()) as any };
    },
  };
}

const apps: Array<ReturnType<typeof Fastify>> = [];
afterAll(async () => {
  await Promise.all(apps.map((app) => app.close()));
});

describe('the api contract check', () => {
  it('passes a response its operation documents', async () => {
    const app = await appAnswering(200, { id: 'a', count: 2 });
    const response = await app.get('/v1/things/a');
    expect({ status: response.statusCode, body: response.body }).toEqual({
      status: 200,
      body: { id: 'a', count: 2 },
    });
    const missing = await appAnswering(404, { error: { code: 'thing_not_found', message: 'no such thing' } });
    expect((await missing.get('/v1/things/b')).statusCode).toBe(404);
  });

  it.each([
    [
      'a field the schema does not have',
      200,
      { id: 'a', count: 2, secret: 'x' },
      /must NOT have additional properties/,
    ],
    ['a wrong type', 200, { id: 'a', count: '2' }, /count must be integer/],
    ['a status the operation does not document', 201, { id: 'a', count: 2 }, /status 201 is not documented/],
    ['an error body of another shape', 404, { message: 'gone' }, /must have required property 'error'/],
  ])('answers 500 contract_violation for %s', async (_what, status, body, problem) => {
    const app = await appAnswering(status, body);
    const response = await app.get('/v1/things/a');
    expect(response.statusCode).toBe(500);
    expect(response.body.error.code).toBe('contract_violation');
    expect(response.body.error.message).toMatch(problem);
  });

  it('lists the /v1 routes that have no operation', async () => {
    const { app } = await appAnswering(200, {});
    expect(undocumentedRoutes(app)).toEqual(['GET /v1/other']);
  });

  it('documents each operation in the OpenAPI document, shared errors included', () => {
    const document = openApiDocument(operations) as any;
    const operation = document.paths['/v1/things/{id}'].get;
    expect(operation.operationId).toBe('getThing');
    expect(operation.parameters).toEqual([{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }]);
    expect(Object.keys(operation.responses)).toEqual([
      '200',
      '400',
      '401',
      '403',
      '404',
      '413',
      '415',
      '429',
      '500',
      '503',
    ]);
    expect(operation.responses['404']).toMatchObject({
      'x-error-codes': ['thing_not_found'],
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    });
  });

  it('holds a 429 or 503 to its documented Retry-After header', async () => {
    const app = Fastify();
    registerContractCheck(app, operations);
    app.get('/v1/things/:id', async (request, reply) => {
      if (request.query && (request.query as { header?: string }).header) void reply.header('retry-after', '2');
      return reply.status(503).send({ error: { code: 'unavailable', message: 'try again' } });
    });
    const url = await app.listen({ host: '127.0.0.1', port: 0 });
    apps.push(app);
    const without = await fetch(`${url}/v1/things/a`);
    expect(without.status).toBe(500);
    expect(((await without.json()) as any).error.message).toMatch(/header retry-after missing/);
    const withHeader = await fetch(`${url}/v1/things/a?header=1`);
    expect(withHeader.status).toBe(503);
    expect(withHeader.headers.get('retry-after')).toBe('2');
  });

  it('documents the headers answers carry: request id everywhere, rate limits, Retry-After on 429 and 503', () => {
    const operation = (openApiDocument(operations) as any).paths['/v1/things/{id}'].get;
    for (const status of Object.keys(operation.responses)) {
      expect(operation.responses[status].headers['x-request-id']).toEqual({ $ref: '#/components/headers/RequestId' });
      expect(operation.responses[status].headers['x-ratelimit-remaining']).toEqual({
        $ref: '#/components/headers/RateLimitRemaining',
      });
    }
    expect(operation.responses['429'].headers['retry-after']).toEqual({ $ref: '#/components/headers/RetryAfter' });
    expect(operation.responses['503'].headers['retry-after']).toEqual({ $ref: '#/components/headers/RetryAfter' });
    expect(operation.responses['200'].headers['retry-after']).toBeUndefined();
  });
});
