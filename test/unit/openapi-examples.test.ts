import { z } from 'zod';
import { OPERATIONS } from '../../api/contracts';
import { openApiDocument, responsesOf } from '../../api/openapi/document';
import { DEFAULT_PAYMENT_MAX_AMOUNT, loadConfig } from '../../platform/config';

/** Issue 21 §1: the document's examples come from the zod contracts and each one is what the api accepts or answers. */
const examplesOf = (schema: z.ZodType | undefined): unknown[] => {
  const examples = schema ? z.globalRegistry.get(schema)?.examples : [];
  return Array.isArray(examples) ? examples : [];
};

describe('the OpenAPI examples', () => {
  const withBody = OPERATIONS.filter((operation) => operation.body);

  it('gives every request body at least one example', () => {
    expect(withBody.filter((operation) => examplesOf(operation.body).length === 0).map((o) => o.operationId)).toEqual(
      [],
    );
  });

  it.each(withBody.map((operation) => [operation.operationId, operation] as const))(
    "%s's request examples pass the route's own schema",
    (_id, operation) => {
      for (const example of examplesOf(operation.body)) {
        const parsed = operation.body!.safeParse(example);
        expect(parsed.error?.issues ?? []).toEqual([]);
      }
    },
  );

  it("every response example passes its response's schema", () => {
    let checked = 0;
    for (const operation of OPERATIONS) {
      for (const [status, spec] of Object.entries(responsesOf(operation))) {
        for (const example of examplesOf(spec.schema)) {
          const parsed = spec.schema!.safeParse(example);
          expect({ operation: operation.operationId, status, issues: parsed.error?.issues ?? [] }).toEqual({
            operation: operation.operationId,
            status,
            issues: [],
          });
          checked += 1;
        }
      }
    }
    expect(checked).toBeGreaterThanOrEqual(5);
  });

  it('shows them as media-type examples in the document', () => {
    const document = openApiDocument() as any;
    const create = document.paths['/v1/companies/{companyId}/payments'].post;
    const body = create.requestBody.content['application/json'];
    expect(body.examples.example.value).toMatchObject({ amount: 4500, currency: 'usd' });
    expect(body.schema.examples).toBeUndefined();
    expect(create.responses['202'].content['application/json'].examples.example.value).toMatchObject({
      status: 'queued',
    });
  });

  it("documents the amount bound of PAYMENT_MAX_AMOUNT's default, the one an unconfigured api enforces", () => {
    const devSecretOnly = (path: string): string => {
      if (path.endsWith('dev-jwt-secret')) return 'a-random-per-install-development-token-secret';
      throw new Error(`no file ${path}`);
    };
    expect(loadConfig({}, devSecretOnly).payments.maxAmount).toBe(DEFAULT_PAYMENT_MAX_AMOUNT);
    const document = openApiDocument() as any;
    const amountOf = (path: string) =>
      document.paths[path].post.requestBody.content['application/json'].schema.properties.amount.maximum;
    expect(amountOf('/v1/companies/{companyId}/payments')).toBe(DEFAULT_PAYMENT_MAX_AMOUNT);
    expect(amountOf('/v1/companies/{companyId}/payments/{paymentId}/refunds')).toBe(DEFAULT_PAYMENT_MAX_AMOUNT);
    expect(amountOf('/v1/companies/{companyId}/plans')).toBe(DEFAULT_PAYMENT_MAX_AMOUNT);
  });
});
