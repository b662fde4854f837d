/**
 * Found by the chaos suite (issue 23 §3, `npm run chaos`): an advance whose audit event could not be queued (Redis
 * restarting or paused) answered 503 but left the clock `advancing` with no job to finish it, so every retry was
 * refused 409 test_clock_advancing and the clock never became ready again.
 */
import { createCompany } from '../../models/companies';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { waitFor } from '../support/harness';

let system: InProcessSystem;
let companyId = '';
let token = '';

beforeAll(async () => {
  system = await startInProcessSystem('clock_faults');
  companyId = await createCompany(system.ctx.db, { name: 'Clock Faults Practice' });
  token = await system.token(companyId, ['company_admin'], { subject: 'usr-clock-admin' });
});

afterAll(async () => {
  await system?.close();
});

async function post(url: string, path: string, body: unknown, key: string) {
  const response = await fetch(`${url}/v1/companies/${companyId}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

it('an advance refused for want of the audit trail leaves the clock ready: the retry advances it', async () => {
  const created = await post(system.url, '/test-clocks', { frozenTime: '2026-02-01T00:00:00.000Z' }, 'clock-1');
  expect(created.status).toBe(201);
  const clockId = String(created.body.id);
  const advance = { frozenTime: '2026-03-01T00:00:00.000Z' };

  const refused = await system.withRedisDownApi((url) =>
    post(url, `/test-clocks/${clockId}/advance`, advance, 'adv-1'),
  );
  expect(refused.status).toBe(503);

  // The client retries once Redis answers again: the advance is taken, and the clock gets there.
  const retried = await post(system.url, `/test-clocks/${clockId}/advance`, advance, 'adv-1');
  expect({ status: retried.status, code: retried.body.error?.code }).toEqual({ status: 202, code: undefined });
  const clock = await waitFor(
    async () => (await system.ctx.db.models.TestClock.findById(clockId).lean())!,
    (c) => c.status === 'ready',
    { what: 'the clock to be ready' },
  );
  expect(clock.frozenTime.toISOString()).toBe(advance.frozenTime);
});

it('a clock left advancing with no job (the api stopped between the two) is finished by the outbox sweep', async () => {
  const created = await post(system.url, '/test-clocks', { frozenTime: '2026-02-01T00:00:00.000Z' }, 'clock-2');
  expect(created.status).toBe(201);
  const clockId = String(created.body.id);
  // What an api killed after marking the advance, before queueing its job, leaves behind.
  await system.ctx.db.models.TestClock.updateOne(
    { _id: clockId },
    { $set: { status: 'advancing', frozenTime: new Date('2026-03-01T00:00:00.000Z') } },
  );
  const refused = await post(
    system.url,
    `/test-clocks/${clockId}/advance`,
    { frozenTime: '2026-04-01T00:00:00.000Z' },
    'adv-2',
  );
  expect(refused.body.error?.code).toBe('test_clock_advancing');

  const swept = await system.sweepNow();
  expect(swept.requeued).toBeGreaterThanOrEqual(1);
  const clock = await waitFor(
    async () => (await system.ctx.db.models.TestClock.findById(clockId).lean())!,
    (c) => c.status === 'ready',
    { what: 'the swept clock to be ready' },
  );
  expect(clock.frozenTime.toISOString()).toBe('2026-03-01T00:00:00.000Z');
  const retried = await post(
    system.url,
    `/test-clocks/${clockId}/advance`,
    { frozenTime: '2026-04-01T00:00:00.000Z' },
    'adv-3',
  );
  expect(retried.status).toBe(202);
});

it('an advance asked again after it was taken (its answer lost) is answered with the clock, not refused as backwards', async () => {
  // Found by the chaos suite: an api killed after taking an advance sent no answer; the client's retry was told 422
  // test_clock_backwards, so it could not tell its advance had happened.
  const created = await post(system.url, '/test-clocks', { frozenTime: '2026-02-01T00:00:00.000Z' }, 'clock-3');
  expect(created.status).toBe(201);
  const clockId = String(created.body.id);
  const advance = { frozenTime: '2026-03-01T00:00:00.000Z' };
  expect((await post(system.url, `/test-clocks/${clockId}/advance`, advance, 'adv-4')).status).toBe(202);
  await waitFor(
    async () => (await system.ctx.db.models.TestClock.findById(clockId).lean())!,
    (c) => c.status === 'ready',
    { what: 'the clock to be ready' },
  );

  const repeated = await post(system.url, `/test-clocks/${clockId}/advance`, advance, 'adv-4');
  expect({ status: repeated.status, frozenTime: repeated.body.frozenTime, state: repeated.body.status }).toEqual({
    status: 202,
    frozenTime: advance.frozenTime,
    state: 'ready',
  });
  // Nothing moved and nothing was recorded twice; an earlier time is still refused.
  const audited = await waitFor(
    () =>
      system.ctx.db.models.AuditEvent.find({
        companyId,
        action: 'test_clock.advanced',
        'resource.id': clockId,
      }).lean(),
    (events) => events.length >= 1,
    { what: 'the advance audited' },
  );
  expect(audited).toHaveLength(1);
  const earlier = await post(
    system.url,
    `/test-clocks/${clockId}/advance`,
    { frozenTime: '2026-02-15T00:00:00.000Z' },
    'adv-5',
  );
  expect(earlier.body.error?.code).toBe('test_clock_backwards');
});
