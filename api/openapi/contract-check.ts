import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { responsesOf } from './document';
import type { OperationSpec } from './spec';

/**
 * Holds the api to its contract (API_CONTRACT_CHECK, on in the test suites): a response whose status is not documented
 * for its operation, whose body does not match the documented schema, or that lacks a header documented as required, leaves as `500 contract_violation` naming
 * what differs (and is logged). So every response the integration suite receives is validated against the document;
 * test/integration/openapi.test.ts checks that every route has its operation.
 */
const UNDOCUMENTED = new WeakMap<FastifyInstance, string[]>();

/** The /v1 routes an app checked by `registerContractCheck` registered without an operation in api/contracts. */
export const undocumentedRoutes = (app: FastifyInstance): readonly string[] => UNDOCUMENTED.get(app) ?? [];

export function registerContractCheck(app: FastifyInstance, operations: readonly OperationSpec[]): void {
  const byRoute = new Map(operations.map((o) => [`${o.method.toUpperCase()} ${o.route}`, o]));
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const validators = new Map<string, ValidateFunction>();
  const validatorOf = (key: string, schema: z.ZodType) => {
    let validate = validators.get(key);
    if (!validate) {
      validate = ajv.compile(z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any' }));
      validators.set(key, validate);
    }
    return validate;
  };

  const undocumented: string[] = [];
  UNDOCUMENTED.set(app, undocumented);
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/v1/')) return;
    for (const method of [route.method].flat()) {
      if (method !== 'HEAD' && !byRoute.has(`${method} ${route.url}`)) undocumented.push(`${method} ${route.url}`);
    }
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const key = `${request.method} ${request.routeOptions.url}`;
    const operation = byRoute.get(key);
    if (!operation) return payload;
    const status = reply.statusCode;
    const spec = responsesOf(operation)[status];
    const violation = (problem: string) => {
      request.log.error({ operation: operation.operationId, status, problem }, 'response breaks the api contract');
      void reply.code(500).type('application/json');
      return JSON.stringify({
        error: { code: 'contract_violation', message: `${operation.operationId} ${status}: ${problem}` },
      });
    };
    if (!spec) return violation(`status ${status} is not documented`);
    const missing = Object.entries(spec.headers ?? {})
      .filter(([name, header]) => header.required && reply.getHeader(name) === undefined)
      .map(([name]) => name);
    if (missing.length) return violation(`header ${missing.join(', ')} missing`);
    const type = String(reply.getHeader('content-type') ?? '');
    if (spec.alsoAs?.some((other) => type.startsWith(other))) return payload;
    if (spec.contentType) {
      return type.startsWith(spec.contentType) ? payload : violation(`content type ${type}, not ${spec.contentType}`);
    }
    if (!spec.schema)
      return payload === undefined || payload === '' ? payload : violation('a body where none is documented');
    let body: unknown;
    try {
      body = JSON.parse(typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString() : '');
    } catch {
      return violation('the body is not JSON');
    }
    const validate = validatorOf(`${key} ${status}`, spec.schema);
    if (validate(body)) return payload;
    return violation(ajv.errorsText(validate.errors, { separator: '; ' }));
  });
}
