import { ulid } from 'ulid';
import { createCompany, devAttestation } from '../../models/companies';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';

let system: InProcessSystem;
let companyId: string;
let admin: string;
let auditor: string;
let paid: string;
let declined: string;

const visa = {
  amount: 5_000,
  currency: 'usd',
  customer: 'cus_Audit01',
  paymentMethod: 'pm_card_visa',
  officeId: 'off_1',
};

async function api(path: string, token: string, init: RequestInit = {}) {
  const response = await fetch(`${system.url}/v1/companies/${companyId}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

async function pay(body: object): Promise<string> {
  const response = await api('/payments', admin, {
    method: 'POST',
    headers: { 'idempotency-key': `audit-${ulid()}` },
    body: JSON.stringify(body),
  });
  const { id } = JSON.parse(response.text);
  await waitFor(
    () => system.ctx.db.models.Payment.findById(id).lean(),
    (p) => p?.status === 'succeeded' || p?.status === 'failed',
    { what: `payment ${id} to settle` },
  );
  return id;
}

async function trail(): Promise<Array<{ _id: string; action: string; resource: { id: string }; sequence: number }>> {
  return system.ctx.db.models.AuditEvent.find({ companyId }).sort({ sequence: 1 }).lean();
}

beforeAll(async () => {
  system = await startInProcessSystem('audit_api');
  companyId = await createCompany(system.ctx.db, {
    name: 'Harbor Dermatology',
    stripeSecretKey: 'sk_test_harbor',
    compliance: devAttestation('test'),
  });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  auditor = await system.token(companyId, ['auditor'], { subject: 'usr-auditor' });

  // The scenario: a payment that succeeds, one that is declined, a denied attempt, break-glass access.
  paid = await pay(visa);
  declined = await pay({ ...visa, paymentMethod: 'pm_card_chargeDeclined' });
  const clerkOfAnotherOffice = await system.token(companyId, ['billing_clerk'], {
    officeIds: ['off_2'],
    subject: 'usr-clerk',
  });
  expect((await api(`/payments/${paid}`, clerkOfAnotherOffice)).status).toBe(403);
  const responder = await system.token(companyId, ['emergency_access'], { subject: 'usr-er' });
  expect(
    (await api(`/payments/${paid}`, responder, { headers: { 'x-access-reason': 'ER admission, checking balance' } }))
      .status,
  ).toBe(200);
  // The paid visit's invoice is finalized and rendered too: the scenario is over once its document is.
  await waitFor(trail, (events) => events.length >= 8 && events.some((e) => e.action === 'invoice.rendered'), {
    what: 'scenario events',
  });
});

afterAll(async () => system.close());

describe('the audit trail records the scenario', () => {
  it('holds exactly the expected actions, in causal order', async () => {
    const events = await trail();
    expect(events.map((e) => e.action).sort()).toEqual(
      [
        'access.denied',
        'access.emergency',
        'invoice.finalized',
        'invoice.rendered',
        'payment.failed',
        'payment.requested',
        'payment.requested',
        'payment.succeeded',
      ].sort(),
    );
    const at = (action: string, id: string) =>
      events.find((e) => e.action === action && e.resource.id === id)!.sequence;
    expect(at('payment.requested', paid)).toBeLessThan(at('payment.succeeded', paid));
    expect(at('payment.requested', declined)).toBeLessThan(at('payment.failed', declined));
    expect(events.map((e) => e.sequence)).toEqual(events.map((_e, i) => i + 1));
  });
});

describe('reading it (auditors)', () => {
  it('lists events with filters and decrypts what was sealed; the read itself is recorded', async () => {
    const denied = await api('/audit-events?outcome=denied', auditor);
    expect(denied.status).toBe(200);
    const items = JSON.parse(denied.text).items;
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      action: 'access.denied',
      reason: 'office_out_of_scope',
      actor: { id: 'usr-clerk', type: 'user', roles: ['billing_clerk'] },
      route: 'GET /v1/companies/:companyId/payments/:paymentId',
      resource: { type: 'payment', id: paid },
      request: { sourceIp: expect.stringMatching(/127\.0\.0\.1/) },
    });
    const emergency = JSON.parse((await api('/audit-events?action=access.emergency', auditor)).text).items;
    expect(emergency[0]).toMatchObject({ severity: 'high', actor: { accessReason: 'ER admission, checking balance' } });

    const byResource = JSON.parse((await api(`/audit-events?resourceId=${declined}`, auditor)).text).items;
    expect(byResource.map((e: { action: string }) => e.action)).toEqual(['payment.requested', 'payment.failed']);

    await waitFor(
      () =>
        system.ctx.db.models.AuditEvent.countDocuments({ companyId, action: 'audit.read', 'actor.id': 'usr-auditor' }),
      (n) => n >= 3,
      { what: 'audit.read events' },
    );
  });

  it('pages with a cursor', async () => {
    const total = await system.ctx.db.models.AuditEvent.countDocuments({ companyId });
    const seen: number[] = [];
    let after: number | null = null;
    do {
      const body = JSON.parse(
        (await api(`/audit-events?limit=3${after === null ? '' : `&after=${after}`}`, auditor)).text,
      );
      seen.push(...body.items.map((e: { sequence: number }) => e.sequence));
      after = body.nextCursor;
    } while (after !== null);
    expect(seen.length).toBeGreaterThanOrEqual(total);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    expect(new Set(seen).size).toBe(seen.length);
  });

  it('exports NDJSON, one event per line, and records the export', async () => {
    const response = await api('/audit-events?format=ndjson&action=payment.requested', auditor);
    expect(response.headers.get('content-type')).toContain('application/x-ndjson');
    const lines = response.text
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.map((e) => e.resource.id).sort()).toEqual([paid, declined].sort());
    await waitFor(
      () => system.ctx.db.models.AuditEvent.countDocuments({ companyId, action: 'audit.exported' }),
      (n) => n === 1,
      { what: 'audit.exported event' },
    );
  });

  it('verifies the chain over the API, and locates a tampered event', async () => {
    const intact = JSON.parse((await api('/audit-events/verify', auditor)).text);
    expect(intact).toMatchObject({ companyId, ok: true });
    expect(intact.checked).toBeGreaterThanOrEqual(6);

    const target = (await trail())[2]!;
    await system.ctx.rawMongo
      .db()
      .collection('audit_events')
      .updateOne({ _id: target._id as never }, { $set: { reason: 'nothing_to_see' } });
    const broken = JSON.parse((await api('/audit-events/verify', auditor)).text);
    expect(broken.ok).toBe(false);
    expect(broken.broken).toMatchObject({ sequence: target.sequence, problem: 'hash_mismatch' });
  });

  it('is closed to roles without audit access', async () => {
    const clerk = await system.token(companyId, ['billing_clerk'], { officeIds: ['off_1'] });
    expect((await api('/audit-events', clerk)).status).toBe(403);
    expect((await api('/audit-events/verify', clerk)).status).toBe(403);
    expect((await api('/audit-events?limit=5000', auditor)).status).toBe(400);
    expect((await api('/audit-events?action=payment.deleted', auditor)).status).toBe(400);
  });
});
