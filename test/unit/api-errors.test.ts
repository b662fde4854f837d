import Fastify from 'fastify';
import { registerErrorHandler } from '../../api/errors';
import { TokenStoreUnavailableError } from '../../models/document-tokens';
import { DocumentWriteUnavailableError } from '../../models/serialized-writes';

// A write refused before anything was stored (its store was briefly out, or its document stayed busy) is a 503 the
// caller retries after the time it is given; any other failure is a 500 that says nothing internal.
async function answerTo(error: Error) {
  const app = Fastify();
  registerErrorHandler(app);
  app.get('/', async () => {
    throw error;
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(url);
    return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.json() };
  } finally {
    await app.close();
  }
}

describe('the api answer to a write that was not made', () => {
  it.each([
    ['a cache token Redis did not take', new TokenStoreUnavailableError('the company is not written')],
    ['a subscription whose write lease could not be had', new DocumentWriteUnavailableError('held for 10000 ms')],
  ])('is 503 with retry-after for %s', async (_what, error) => {
    const answer = await answerTo(error);
    expect(answer.status).toBe(503);
    expect(Number(answer.retryAfter)).toBeGreaterThan(0);
    expect(answer.body).toEqual({
      error: { code: 'unavailable', message: 'a store this change needs is briefly unavailable; try again' },
    });
  });

  it('is 500 without the internal message for anything else', async () => {
    const answer = await answerTo(new Error('lease key hbt:doc-write:subscription:sub_1'));
    expect(answer.status).toBe(500);
    expect(JSON.stringify(answer.body)).not.toContain('doc-write');
  });
});
