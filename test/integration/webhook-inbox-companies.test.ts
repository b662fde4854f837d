import { ulid } from 'ulid';
import { createCompany } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

/**
 * Issue 20: two companies on one Stripe account both receive each of its events (one endpoint each, same event
 * id). Each stores, processes and audits its own copy; before, the second company's copy was dropped as "already
 * stored for another company".
 */
let system: InProcessSystem;
const companies: Array<{ id: string; secret: string }> = [];

beforeAll(async () => {
  system = await startInProcessSystem('inbox-companies');
  for (const [name, secret] of [
    ['North Shared Account Clinic', 'whsec_SharedAccountNorth001'],
    ['South Shared Account Clinic', 'whsec_SharedAccountSouth001'],
  ] as const) {
    const id = await createCompany(system.ctx.db, { name });
    const admin = await system.token(id, ['company_admin'], { subject: `usr-${id}` });
    await configureStripeWebhooks(system, id, admin, {
      secretKey: 'sk_test_51SharedStripeAccount0001',
      webhookSigningSecrets: [secret],
    });
    companies.push({ id, secret });
  }
});

afterAll(async () => {
  await system?.close();
});

async function rowsOf(eventId: string) {
  return system.ctx.db.models.WebhookEvent.find(
    { $or: [{ _id: eventId }, { stripeEventId: eventId }] },
    { payload: 0 },
  ).lean();
}

it('stores and processes one copy of an event per company, and a redelivery adds nothing', async () => {
  const event = stripeEventEnvelope(`evt_${ulid()}`, 'customer.created', { id: 'cus_SharedAccount001' });
  for (const { id, secret } of companies) {
    expect((await deliverSigned(system.url, id, event, { secret })).status).toBe(200);
  }
  const rows = await waitFor(
    () => rowsOf(event.id),
    (found) => found.length === 2 && found.every((row) => row.status !== 'received'),
    { what: 'both companies’ copies to be processed' },
  );
  expect(rows.map((row) => row.companyId).sort()).toEqual(companies.map((c) => c.id).sort());
  expect(rows.every((row) => row.status === 'ignored' && row.outcome?.reason === 'unhandled_type')).toBe(true);

  // Stripe retries both deliveries: still one copy each.
  for (const { id, secret } of companies) {
    expect((await deliverSigned(system.url, id, event, { secret })).status).toBe(200);
  }
  expect(await rowsOf(event.id)).toHaveLength(2);
});
