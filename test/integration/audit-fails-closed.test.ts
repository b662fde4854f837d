import { ulid } from 'ulid';
import type { AuditAction } from '../../domain/audit-actions';
import { createCompany } from '../../models/companies';
import { officeRecordId } from '../../models/office.model';
import { payerProfileId } from '../../models/payer-profile.model';
import { MAINTENANCE_JOBS } from '../../queues/maintenance.queue';
import { cli } from '../support/cli';
import { waitFor } from '../support/harness';
import { configWith, startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { startApi } from '../../api/main';
import { assertBuildIsCurrent } from '../support/processes';
import { stripeEventEnvelope } from '../support/stripe-events';

/**
 * Issue 12 §4: an action on security data (payment configuration, attestations, the audit trail itself) either has
 * its audit event durably recorded — stored with the change under a fixed id, and sent by the outbox sweep when Redis
 * does not take it — or is refused with 503. Redis is "down" for a second api (or the CLI) pointed at a dead port;
 * MongoDB, the workers and the sweep are the real ones.
 */

let system: InProcessSystem;
let companyId: string;
let admin: string;
let auditor: string;

const SECRET = 'sk_test_51FailsClosedSecret001';
const OFFICE_SECRET = 'sk_test_51FailsClosedOffice02';
const DEAD_REDIS = 'redis://127.0.0.1:1';
const RATIONALE = 'Stripe processes payments only; it receives amounts and opaque ids, never PHI (HIPAA section 1179).';

async function call(url: string, method: string, path: string, body?: unknown, token = admin) {
  const response = await fetch(`${url}/v1/companies/${companyId}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, text, body: text ? JSON.parse(text) : undefined };
}

async function recorded(action: AuditAction, company = companyId) {
  return system.ctx.db.models.AuditEvent.find({ companyId: company, action }).lean();
}

/** Runs the outbox sweep as the maintenance worker does in production (its registry-built dependencies). */
async function sweepAsScheduled() {
  const job = await system.ctx.queues.maintenance.add(MAINTENANCE_JOBS.outboxSweep, {}, { jobId: `sweep-${ulid()}` });
  const state = await waitFor(
    () => job.getState(),
    (s) => s === 'completed' || s === 'failed',
    { what: 'the outbox sweep to run' },
  );
  expect(state).toBe('completed');
}

/** Every audit job queued so far has been appended (or failed): nothing is in flight. */
async function auditQueueIdle() {
  await waitFor(
    () => system.ctx.queues.audit.getJobCounts('waiting', 'active', 'delayed'),
    (c) => (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0,
    { what: 'the audit queue to drain' },
  );
}

async function pendingAuditOf(
  kind: 'companies' | 'offices' | 'invoice_settings' | 'payer_profiles' | 'billing_settings' | 'invoices',
  id: string,
) {
  const doc = await system.ctx.rawMongo
    .db()
    .collection(kind)
    .findOne({ _id: id as never }, { projection: { pendingAudit: 1 } });
  return Object.keys((doc?.pendingAudit as object | undefined) ?? {});
}

beforeAll(async () => {
  // No scheduled sweep during the test (each test runs one when it wants it); everything unfinished counts as stale.
  system = await startInProcessSystem('fails_closed', {
    OUTBOX_SWEEP_EVERY_MS: '3600000',
    OUTBOX_STALE_AFTER_MS: '1',
  });
  companyId = await createCompany(system.ctx.db, { name: 'Closed Loop Clinic' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-admin' });
  auditor = await system.token(companyId, ['auditor'], { subject: 'usr-auditor' });
});

afterAll(async () => {
  if (!system) return;
  expect(system.ctx.logs.text).not.toContain(SECRET);
  expect(system.ctx.logs.text).not.toContain(OFFICE_SECRET);
  await system.close();
});

describe('configuration changes and attestations', () => {
  it('a change made while Redis is down answers 503 audit_unavailable; it is kept, and the sweep records its audit events once', async () => {
    const response = await system.withRedisDownApi((url) =>
      call(url, 'PUT', '/payment-config', {
        mode: 'office',
        credentials: { secretKey: SECRET },
        attestation: { status: 'exempt_1179', rationale: RATIONALE },
      }),
    );
    expect(response.status).toBe(503);
    expect(response.body.error.code).toBe('audit_unavailable');
    expect(response.text).not.toContain(SECRET);

    // The change is saved, and its audit events are stored with it until they are sent.
    const saved = await call(system.url, 'GET', '/payment-config');
    expect(saved.body).toMatchObject({ mode: 'office', compliance: { status: 'exempt_1179' } });
    expect(saved.text).toContain('sk_test_…t001');
    expect(await pendingAuditOf('companies', companyId)).toHaveLength(1);
    await auditQueueIdle();
    expect(await recorded('payment_config.updated')).toHaveLength(0);

    await sweepAsScheduled();
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    const updated = await recorded('payment_config.updated');
    const attested = await recorded('payment_config.attested');
    expect(updated).toHaveLength(1);
    expect(attested).toHaveLength(1);
    expect(updated[0]).toMatchObject({
      actor: { type: 'user', id: 'usr-admin' },
      resource: { type: 'payment_config', id: companyId },
      route: 'PUT /v1/companies/:companyId/payment-config',
      changes: expect.arrayContaining([{ field: 'mode', before: null, after: 'office' }]),
    });
    // The request's sealed context travelled with the stored event.
    expect(updated[0]!.request?.sourceIp).toBeDefined();
    expect(await pendingAuditOf('companies', companyId)).toEqual([]);
  });

  it('an attestation and an office change made while Redis is down are recorded by the sweep, once each', async () => {
    const attestation = await system.withRedisDownApi((url) =>
      call(url, 'POST', '/payment-config/attestation', { status: 'exempt_1179', rationale: RATIONALE }),
    );
    expect(attestation.status).toBe(503);
    expect(attestation.body.error.code).toBe('audit_unavailable');
    const office = await system.withRedisDownApi((url) =>
      call(url, 'PUT', '/offices/off_north/payment-config', { credentials: { secretKey: OFFICE_SECRET } }),
    );
    expect(office.status).toBe(503);
    expect(await pendingAuditOf('offices', officeRecordId(companyId, 'off_north'))).toHaveLength(1);

    const attestedBefore = (await recorded('payment_config.attested')).length;
    await sweepAsScheduled();
    await auditQueueIdle();
    expect(await recorded('payment_config.attested')).toHaveLength(attestedBefore + 1);
    const officeEvents = (await recorded('payment_config.updated')).filter(
      (e) => e.resource.id === `${companyId}.off_north`,
    );
    expect(officeEvents).toHaveLength(1);
    // The key and the account Stripe says it belongs to.
    expect(officeEvents[0]).toMatchObject({
      changes: [
        { field: 'secretKey', before: null, after: 'sk_test_…ce02' },
        { field: 'accountId', before: null, after: expect.stringMatching(/^acct_…/) },
      ],
    });
    expect(await pendingAuditOf('offices', officeRecordId(companyId, 'off_north'))).toEqual([]);
  });

  it('with Redis up, a change is audited at once and leaves nothing pending', async () => {
    const before = (await recorded('payment_config.updated')).length;
    const response = await call(system.url, 'PUT', '/payment-config', {
      mode: 'office',
      credentials: { secretKey: SECRET },
      statementDescriptor: 'CLOSED LOOP',
    });
    expect(response.status).toBe(200);
    expect(await pendingAuditOf('companies', companyId)).toEqual([]);
    await waitFor(
      () => recorded('payment_config.updated'),
      (events) => events.length === before + 1,
      { what: 'the change to be audited' },
    );
  });

  it('a configuration read while Redis is down is refused with 503 and shows nothing', async () => {
    const read = await system.withRedisDownApi((url) => call(url, 'GET', '/payment-config'));
    expect(read.status).toBe(503);
    expect(read.body.error.code).toBe('audit_unavailable');
    expect(read.text).not.toContain('sk_test_');
    expect(read.text).not.toContain('exempt_1179');
  });
});

describe('invoice settings, payer profiles and billing settings (issue 20 §3)', () => {
  const changes = [
    {
      what: 'company invoice settings',
      path: '/invoice-settings',
      body: { phiLevel: 'standard', letterhead: { name: 'Closed Loop Clinic', address: ['1 Loop Rd'] } },
      action: 'invoice_settings.updated' as const,
      collection: 'invoice_settings' as const,
      holder: () => `company|${companyId}`,
      resourceId: () => companyId,
      stored: (doc: Record<string, any> | null) => doc?.phiLevel === 'standard',
    },
    {
      what: 'office invoice settings',
      path: '/offices/off_east/invoice-settings',
      body: { letterheadStyle: 'neutral' },
      action: 'invoice_settings.updated' as const,
      collection: 'invoice_settings' as const,
      holder: () => `office|${companyId}|off_east`,
      resourceId: () => `${companyId}-off_east`,
      stored: (doc: Record<string, any> | null) => doc?.letterheadStyle === 'neutral',
    },
    {
      what: 'a payer profile (PHI)',
      path: '/payers/cus_ClosedLoopPayer1',
      body: { name: 'Closed Loop Payer', billingAddress: ['2 Loop Rd'], email: 'payer@example.com' },
      action: 'payer.updated' as const,
      collection: 'payer_profiles' as const,
      holder: () => payerProfileId(companyId, 'cus_ClosedLoopPayer1'),
      resourceId: () => 'cus_ClosedLoopPayer1',
      stored: (doc: Record<string, any> | null) => doc !== null,
    },
    {
      what: 'billing and dunning settings',
      path: '/billing-settings',
      body: { timeZone: 'America/Chicago', dunning: { retryDelaysDays: [1, 3], finalState: 'canceled' } },
      action: 'billing_settings.updated' as const,
      collection: 'billing_settings' as const,
      holder: () => companyId,
      resourceId: () => companyId,
      stored: (doc: Record<string, any> | null) => doc?.timeZone === 'America/Chicago',
    },
  ];

  it.each(changes.map((change) => [change.what, change] as const))(
    '%s changed while Redis is down: 503 audit_unavailable, kept with its event, which the sweep records once',
    async (_what, change) => {
      const response = await system.withRedisDownApi((url) => call(url, 'PUT', change.path, change.body));
      expect(response.status).toBe(503);
      expect(response.body.error.code).toBe('audit_unavailable');
      // Saved, with its audit event beside it.
      const doc = await system.ctx.rawMongo
        .db()
        .collection(change.collection)
        .findOne({ _id: change.holder() as never });
      expect(change.stored(doc)).toBe(true);
      expect(await pendingAuditOf(change.collection, change.holder())).toHaveLength(1);
      await auditQueueIdle();
      const of = async () => (await recorded(change.action)).filter((e) => e.resource.id === change.resourceId());
      expect(await of()).toHaveLength(0);

      await sweepAsScheduled();
      await auditQueueIdle();
      await sweepAsScheduled();
      await auditQueueIdle();
      const events = await of();
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor: { type: 'user', id: 'usr-admin' }, outcome: 'success' });
      expect(events[0]!.request?.sourceIp).toBeDefined();
      // Only which fields changed, never a payer's details.
      expect(JSON.stringify(events[0])).not.toContain('Closed Loop Payer');
      expect(await pendingAuditOf(change.collection, change.holder())).toEqual([]);
    },
  );

  it('an invoice voided while Redis is down: 503 audit_unavailable, void with its event, which the sweep records once', async () => {
    const invoiceId = `inv_${'a'.repeat(32)}`;
    const now = new Date();
    await system.ctx.db.models.Invoice.create({
      _id: invoiceId,
      companyId,
      kind: 'invoice',
      status: 'uncollectible',
      source: { type: 'payment', id: 'pay_FailsClosedVoid' },
      settleAs: 'uncollectible',
      customerRef: 'cus_ClosedLoopPayer1',
      number: 'INV-2026-000900',
      sequence: 900,
      currency: 'usd',
      lines: [{ code: 'office_visit', description: 'Office visit', quantity: 1, unitAmount: 1000, amount: 1000 }],
      subtotal: 1000,
      total: 1000,
      amountPaid: 0,
      amountDue: 1000,
      issuedAt: now,
      timeZone: 'UTC',
      documentStatus: 'pending',
    });
    const response = await system.withRedisDownApi((url) =>
      call(url, 'POST', `/invoices/${invoiceId}/void`, { reason: 'issued_in_error' }),
    );
    expect(response.status).toBe(503);
    expect(response.body.error.code).toBe('audit_unavailable');
    expect((await call(system.url, 'GET', `/invoices/${invoiceId}`)).body.status).toBe('void');
    expect(await pendingAuditOf('invoices', invoiceId)).toHaveLength(1);
    await sweepAsScheduled();
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    const voided = (await recorded('invoice.voided')).filter((e) => e.resource.id === invoiceId);
    expect(voided).toHaveLength(1);
    expect(voided[0]).toMatchObject({ actor: { type: 'user', id: 'usr-admin' }, reason: 'issued_in_error' });
    expect(await pendingAuditOf('invoices', invoiceId)).toEqual([]);
  });

  it('with Redis up, each is audited at once and leaves nothing pending', async () => {
    for (const change of changes) {
      const before = (await recorded(change.action)).filter((e) => e.resource.id === change.resourceId()).length;
      const response = await call(system.url, 'PUT', change.path, change.body);
      expect({ what: change.what, status: response.status }).toEqual({ what: change.what, status: 200 });
      expect(await pendingAuditOf(change.collection, change.holder())).toEqual([]);
      await waitFor(
        async () => (await recorded(change.action)).filter((e) => e.resource.id === change.resourceId()),
        (events) => events.length === before + 1,
        { what: `${change.what} to be audited` },
      );
    }
  });
});

describe('audit trail reads and exports', () => {
  it('an export, a read or a verification while Redis is down is refused with 503 and returns no event', async () => {
    await waitFor(
      () => system.ctx.db.models.AuditEvent.countDocuments({ companyId }),
      (count) => count > 0,
      { what: 'some audit events to export' },
    );
    await system.withRedisDownApi(async (url) => {
      for (const path of ['/audit-events?format=ndjson', '/audit-events', '/audit-events/verify']) {
        const response = await call(url, 'GET', path, undefined, auditor);
        expect({ path, status: response.status, code: response.body?.error?.code }).toEqual({
          path,
          status: 503,
          code: 'audit_unavailable',
        });
        expect(response.text).not.toContain('payment_config');
        expect(response.text).not.toContain('"sequence"');
      }
    });
    // With Redis up the export is served, and is itself audited.
    const served = await call(system.url, 'GET', '/audit-events', undefined, auditor);
    expect(served.status).toBe(200);
    await waitFor(
      () => recorded('audit.read'),
      (events) => events.length === 1,
      { what: 'the audit read to be audited' },
    );
  });
});

describe('a settings change in an api whose Redis is down altogether', () => {
  it('is refused 503 with Retry-After and stores nothing (its cache token could not be set first)', async () => {
    // Unlike withRedisDownApi (the queues down, the database's token store up), this api opens its own database, so
    // the token store is down too, as in production when Redis is.
    const isolated = await startApi(configWith(system.ctx, { REDIS_URL: DEAD_REDIS, PORT: '0' }), system.ctx.logger);
    try {
      const body = { timeZone: 'America/Denver', dunning: { retryDelaysDays: [2], finalState: 'canceled' } };
      const response = await fetch(`${isolated.url}/v1/companies/${companyId}/billing-settings`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(((await response.json()) as any).error.code).toBe('unavailable');
    } finally {
      await isolated.stop();
    }
    const stored = await system.ctx.rawMongo
      .db()
      .collection('billing_settings')
      .findOne({ _id: companyId as never });
    expect(stored?.timeZone).not.toBe('America/Denver');
  }, 60_000);
});

describe('cli company create', () => {
  const args = (id: string, key: string) => [
    'company',
    'create',
    '--name',
    'Cli Clinic',
    '--id',
    id,
    '--stripe-secret-key',
    key,
    '--attest-exempt-1179',
    'payments only',
  ];

  it('with Redis down it fails loudly and stores nothing (a company is written with its cache token, Redis first)', async () => {
    assertBuildIsCurrent();
    const id = `co_cli_${ulid().toLowerCase()}`;
    const run = await cli(args(id, 'sk_test_cliCreateKeyA4242'), { ...system.ctx.env, REDIS_URL: DEAD_REDIS }, 30_000);
    expect(run.code).toBe(1);
    expect(run.out).toContain('cache token');
    expect(run.out).not.toContain('sk_test_cliCreateKeyA4242');
    // Nothing half-done to sweep: the same command succeeds once Redis is back, and is audited once.
    expect(await system.ctx.db.models.Company.exists({ _id: id })).toBeNull();
    expect(await cli(args(id, 'sk_test_cliCreateKeyA4242'), system.ctx.env, 30_000)).toMatchObject({ code: 0 });
    await auditQueueIdle();
    const created = await recorded('company.created', id);
    expect(created).toHaveLength(1);
    expect(created[0]).toMatchObject({
      actor: { type: 'user' },
      changes: expect.arrayContaining([
        { field: 'secretKey', before: null, after: 'sk_test_…4242' },
        { field: 'compliance.status', before: null, after: 'exempt_1179' },
      ]),
    });
    expect(await pendingAuditOf('companies', id)).toEqual([]);
  }, 60_000);

  it('a new secret key is audited even when its masked form is the same as the last one', async () => {
    assertBuildIsCurrent();
    const id = `co_cli_${ulid().toLowerCase()}`;
    expect(await cli(args(id, 'sk_test_cliCreateKeyB4242'), system.ctx.env, 30_000)).toMatchObject({ code: 0 });
    expect(await cli(args(id, 'sk_test_cliCreateKeyC4242'), system.ctx.env, 30_000)).toMatchObject({ code: 0 });
    // The same setup again records nothing new.
    expect(await cli(args(id, 'sk_test_cliCreateKeyC4242'), system.ctx.env, 30_000)).toMatchObject({ code: 0 });
    await auditQueueIdle();
    expect(await recorded('company.created', id)).toHaveLength(2);
    expect(await pendingAuditOf('companies', id)).toEqual([]);
  }, 60_000);
});

describe('webhook event replay', () => {
  it('a replay whose enqueue is lost after the reset still records webhook.replayed exactly once', async () => {
    const event = stripeEventEnvelope(`evt_${ulid()}`, 'customer.created', { id: 'cus_FailsClosed01' });
    await system.ctx.db.models.WebhookEvent.create({
      _id: event.id,
      companyId,
      type: event.type,
      livemode: false,
      created: new Date(),
      receivedAt: new Date(),
      status: 'ignored',
      outcome: { reason: 'unhandled_type' },
      processedAt: new Date(),
      payload: await system.ctx.db.encryption.encrypt(companyId, JSON.stringify(event)),
    });

    // The api resets the row, then cannot queue anything: what a crash right after the reset leaves behind.
    const replay = await system.withRedisDownApi((url) =>
      call(url, 'POST', `/webhook-events/${event.id}/replay`, { reason: 'ops_check' }),
    );
    expect(replay.status).toBe(503);

    await sweepAsScheduled();
    await waitFor(
      () => system.ctx.db.models.WebhookEvent.findById(event.id, { payload: 0 }).lean(),
      (row) => row?.status === 'ignored' && row.replays === 1,
      { what: 'the replayed event to be processed' },
    );
    await auditQueueIdle();
    await sweepAsScheduled();
    await auditQueueIdle();
    const replayed = (await recorded('webhook.replayed')).filter((e) => e.resource.id === event.id);
    expect(replayed).toHaveLength(1);
    expect(replayed[0]).toMatchObject({
      actor: { type: 'user', id: 'usr-admin' },
      reason: 'ops_check',
      changes: expect.arrayContaining([{ field: 'replays', before: '0', after: '1' }]),
    });
  });
});
