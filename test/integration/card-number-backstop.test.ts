import { createCompany, devAttestation } from '../../models/companies';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

/**
 * Issue 20: card data must never reach us, wherever a client puts it: the body (digits beside the number, dotted
 * groups, a 19-digit JSON number), the path, the query or the Idempotency-Key. Refused with one code, never echoed,
 * never logged (the request log line writes the path redacted), and nothing is written.
 */
let system: InProcessSystem;
let companyId: string;
let token: string;

const valid = { amount: 2_500, currency: 'usd', customer: 'cus_backstop001', paymentMethod: 'pm_card_visa' };

async function send(path: string, body: string, idempotencyKey = `backstop-${Date.now()}-${Math.random()}`) {
  const response = await fetch(`${system.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      'idempotency-key': idempotencyKey,
    },
    body,
  });
  return { status: response.status, text: await response.text() };
}

beforeAll(async () => {
  system = await startInProcessSystem('card-backstop');
  companyId = await createCompany(system.ctx.db, {
    name: 'Backstop Family Medicine',
    stripeSecretKey: 'sk_test_backstop',
    compliance: devAttestation('test'),
  });
  token = await system.token(companyId);
});

afterAll(async () => {
  await system?.close();
});

it('refuses a card number in any part of the request, and neither echoes nor logs it', async () => {
  const payments = `/v1/companies/${companyId}/payments`;
  const attempts = [
    send(payments, JSON.stringify({ ...valid, paymentMethod: '4242424242424242 1' })),
    send(payments, JSON.stringify({ ...valid, customer: '4242.4242.4242.4242' })),
    send(
      payments,
      `{"amount": 6011000990139424123, "currency": "usd", "customer": "cus_x", "paymentMethod": "pm_card_visa"}`,
    ),
    send(`${payments}/5555555555554444`, JSON.stringify(valid)),
    send(`${payments}?card=5555%205555%205555%204444`, JSON.stringify(valid)),
    send(payments, JSON.stringify(valid), 'pay-378282246310005'),
  ];
  for (const { status, text } of await Promise.all(attempts)) {
    expect({ status, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code }).toEqual({
      status: 400,
      code: 'card_number_refused',
    });
    expect(text).not.toMatch(/4242|5555|3782|6011/);
  }
  expect(system.ctx.logs.text).not.toMatch(/4242\.?4242|5555555555554444|5555 5555|378282246310005|6011000990139424/);
  expect(system.ctx.logs.text).toContain(`${payments}/[REDACTED]`);
  expect(await system.ctx.db.models.Payment.countDocuments({})).toBe(0);
});

it('still takes a payment whose ids and key carry digit runs', async () => {
  const { status } = await send(
    `/v1/companies/${companyId}/payments`,
    JSON.stringify(valid),
    `order-1733360000000-0f3c2a4e-1234-4234-9234-123456789012`,
  );
  expect(status).toBe(202);
});
