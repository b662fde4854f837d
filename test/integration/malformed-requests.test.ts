import { createCompany, devAttestation } from '../../models/companies';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

let system: InProcessSystem;
let companyId: string;
let token: string;

const valid = { amount: 1_000, currency: 'usd', customer: 'cus_Fuzz01', paymentMethod: 'pm_card_visa' };

const ODD_VALUES: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  Number.MAX_SAFE_INTEGER,
  '',
  ' ',
  'x'.repeat(10_000),
  '\u0000',
  '\u202eevil',
  '😷💳',
  'Ω≈ç√∫',
  "'; DROP TABLE payments; --",
  '<script>alert(1)</script>',
  '${jndi:ldap://x}',
  '../../etc/passwd',
  { $gt: '' },
  { $where: 'sleep(1000)' },
  [],
  [1, 2, 3],
  {},
  { __proto__: { admin: true } },
];

function bodies(): Array<{ label: string; body: string; contentType?: string }> {
  const out: Array<{ label: string; body: string; contentType?: string }> = [];
  for (const field of ['amount', 'currency', 'customer', 'paymentMethod', 'officeId', 'serviceCategory']) {
    ODD_VALUES.forEach((value, i) => {
      out.push({ label: `${field}=odd#${i}`, body: JSON.stringify({ ...valid, [field]: value }) });
    });
  }
  ODD_VALUES.forEach((value, i) => out.push({ label: `whole body odd#${i}`, body: JSON.stringify(value) }));
  for (const key of ['__proto__', 'constructor', '$set', 'status', 'companyId', '_id', 'stripePaymentIntentId']) {
    out.push({
      label: `extra ${key}`,
      body: `{"amount":1000,"currency":"usd","customer":"cus_A","paymentMethod":"pm_x","${key}":{"a":1}}`,
    });
  }
  const broken = [
    '',
    '{',
    '[',
    'null',
    '"text"',
    '123',
    '{"amount":}',
    '{"amount":1000,,}',
    '\u0000\u0001',
    '{"a":"\\ud800"}',
  ];
  broken.forEach((body, i) => out.push({ label: `broken JSON #${i}`, body }));
  out.push({ label: 'deeply nested', body: `${'['.repeat(5_000)}${']'.repeat(5_000)}` });
  out.push({ label: 'body over the limit', body: JSON.stringify({ ...valid, customer: 'x'.repeat(70_000) }) });
  out.push({
    label: 'form-encoded',
    body: 'amount=1000&currency=usd',
    contentType: 'application/x-www-form-urlencoded',
  });
  out.push({ label: 'text/plain', body: JSON.stringify(valid), contentType: 'text/plain' });
  out.push({ label: 'xml', body: '<payment><amount>1</amount></payment>', contentType: 'application/xml' });
  return out;
}

beforeAll(async () => {
  system = await startInProcessSystem('malformed', { RATE_LIMIT_PER_MINUTE: '100000' });
  companyId = await createCompany(system.ctx.db, {
    name: 'Fuzz Family Health',
    stripeSecretKey: 'sk_test_fuzz',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
});

afterAll(async () => system.close());

it('answers hundreds of malformed requests with 4xx, never 5xx, and writes nothing', async () => {
  const cases = bodies();
  const weirdPaths = [
    `/v1/companies/${companyId}/payments/extra`,
    `/v1/companies/${encodeURIComponent('co_a;DROP')}/payments`,
    `/v1/companies/${'c'.repeat(300)}/payments`,
    `/v1/companies/%00/payments`,
  ];
  const weirdKeys = ['', 'short', 'k'.repeat(300), 'key with spaces ok?', 'ключ-идемпотентности'];
  const statuses: Record<string, number> = {};
  const serverErrors: string[] = [];

  async function send(label: string, path: string, body: string, headers: Record<string, string>) {
    const response = await fetch(`${system.url}${path}`, { method: 'POST', headers, body });
    statuses[response.status] = (statuses[response.status] ?? 0) + 1;
    if (response.status >= 500 || response.status < 400) serverErrors.push(`${label}: ${response.status}`);
    await response.arrayBuffer();
  }

  const base = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  let n = 0;
  for (const c of cases) {
    n += 1;
    await send(c.label, `/v1/companies/${companyId}/payments`, c.body, {
      ...base,
      ...(c.contentType ? { 'content-type': c.contentType } : {}),
      'idempotency-key': `fuzz-key-${n}-abcdefgh`,
    });
  }
  for (const path of weirdPaths)
    await send(`path ${path.slice(0, 40)}`, path, JSON.stringify(valid), {
      ...base,
      'idempotency-key': 'fuzz-key-path-1',
    });
  for (const key of weirdKeys) {
    try {
      await send(`key ${key.slice(0, 20)}`, `/v1/companies/${companyId}/payments`, '{}', {
        ...base,
        'idempotency-key': key,
      });
    } catch {
      // fetch itself refuses some header values (non-ASCII): nothing reached the server.
    }
  }

  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  expect(total).toBeGreaterThanOrEqual(200);
  expect(serverErrors).toEqual([]);
  expect(await system.ctx.db.models.Payment.countDocuments({})).toBe(0);
  const charges = system.ctx.queues.charges;
  const counts = await charges.getJobCounts();
  expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(0);
  // And the service is still fine afterwards.
  const ok = await fetch(`${system.url}/v1/companies/${companyId}/payments`, {
    method: 'POST',
    headers: { ...base, 'idempotency-key': 'fuzz-after-valid-1' },
    body: JSON.stringify(valid),
  });
  expect(ok.status).toBe(202);
});
