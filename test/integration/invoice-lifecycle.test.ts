import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ulid } from 'ulid';
import { invoicePayment, invoicePeriod, type IssueInvoiceDeps } from '../../application/invoices/issue-invoice';
import { renderInvoiceDocument } from '../../application/invoices/render-invoice';
import { invoiceIdFor } from '../../domain/invoice-number';
import { renderInvoicePdf } from '../../documents/invoice-pdf';
import { openDatabase } from '../../models';
import { createCompany, shredCompany } from '../../models/companies';
import { companyKeyAltName } from '../../models/encryption';
import type { SubscriptionPeriodRecord } from '../../models/subscription.model';
import { enqueueInvoiceRender } from '../../queues/invoices.queue';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { assertBuildIsCurrent } from '../support/processes';
import { insertPayment } from '../support/records';

/**
 * Issue 19 items 15–24 from a user's side: what settings keep, what a document prints about its payer, what happens to
 * a document whose render died half-way, an uncollectible period collected later, voiding, and amounts that must add up.
 */
let system: InProcessSystem;
let pdfDir: string;

type Json = Record<string, any>;

async function api(company: string, token: string, method: string, path: string, body?: unknown) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method === 'POST') headers['idempotency-key'] = `lifecycle-${ulid()}`;
  const response = await fetch(`${system.url}/v1/companies/${company}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  if ((response.headers.get('content-type') ?? '').startsWith('application/pdf')) {
    return { status: response.status, body: {} as Json, pdf: Buffer.from(await response.arrayBuffer()) };
  }
  return { status: response.status, body: (await response.json()) as Json, pdf: undefined };
}

function pdfText(pdf: Buffer): string {
  const file = join(pdfDir, `${ulid()}.pdf`);
  writeFileSync(file, pdf);
  return execFileSync('pdftotext', ['-layout', file, '-'], { encoding: 'utf8' });
}

function issueDeps(): IssueInvoiceDeps {
  return {
    models: system.ctx.db.models,
    encryption: system.ctx.db.encryption,
    numbering: system.ctx.db.invoiceNumbering,
    enqueueAudit: async () => {},
    enqueueRender: (invoiceId, version) =>
      enqueueInvoiceRender(system.ctx.queues.invoices, { invoiceId, ...(version && version > 1 ? { version } : {}) }),
    logger: system.ctx.logger,
  };
}

async function clinic(name: string) {
  const companyId = await createCompany(system.ctx.db, { name });
  const token = await system.token(companyId, ['company_admin'], { subject: `usr-${ulid().toLowerCase()}` });
  return { companyId, token };
}

/** The document, once stored (its status and version as the API shows them). */
async function stored(
  companyId: string,
  token: string,
  invoiceId: string,
  until: (body: Json) => boolean = () => true,
) {
  return (
    await waitFor(
      () => api(companyId, token, 'GET', `/invoices/${invoiceId}`),
      (r) => r.status === 200 && r.body.document?.status === 'stored' && until(r.body),
      { what: `invoice ${invoiceId} to be stored`, timeoutMs: 30_000 },
    )
  ).body;
}

async function downloadText(companyId: string, token: string, invoiceId: string) {
  const download = await api(companyId, token, 'GET', `/invoices/${invoiceId}/pdf`);
  expect(download.status).toBe(200);
  return pdfText(download.pdf!);
}

/** A subscription (as the api would have stored it) and one of its periods, for the invoicing hooks. */
async function subscriptionPeriod(companyId: string, fields: Partial<SubscriptionPeriodRecord> = {}) {
  const subscriptionId = `sub_${ulid()}`;
  const start = new Date('2026-03-01T00:00:00Z');
  const end = new Date('2026-04-01T00:00:00Z');
  await system.ctx.db.models.Subscription.collection.insertOne({
    _id: subscriptionId as never,
    companyId,
    planId: `plan_${ulid()}`,
    customerRef: 'cus_LifecyclePayer1',
    paymentMethodId: `spm_${ulid()}`,
    status: 'active',
    amount: 3000,
    currency: 'usd',
    interval: { unit: 'month', count: 1 },
    cycle: { anchor: start, timeZone: 'America/Chicago' },
    currentPeriod: { index: 0, start, end },
    cancelAtPeriodEnd: false,
  });
  const period = {
    _id: `per_${ulid().toLowerCase()}`,
    companyId,
    subscriptionId,
    index: 0,
    start,
    end,
    amount: 3000,
    currency: 'usd',
    status: 'uncollectible',
    attempts: 4,
    createdAt: start,
    updatedAt: start,
    ...fields,
  } as SubscriptionPeriodRecord;
  return period;
}

beforeAll(async () => {
  assertBuildIsCurrent();
  pdfDir = mkdtempSync(join(tmpdir(), 'hb-lifecycle-'));
  system = await startInProcessSystem('invoice_lifecycle');
}, 60_000);

afterAll(async () => {
  await system?.close();
  if (pdfDir) rmSync(pdfDir, { recursive: true, force: true });
});

describe('invoice settings (item 19)', () => {
  it('a PUT with one field keeps the others; null clears one back to its default', async () => {
    const { companyId, token } = await clinic('Merge Street Clinic');
    const letterhead = { name: 'Merge Street Clinic', address: ['5 Merge St', 'Springfield, IL 62701'] };
    const first = await api(companyId, token, 'PUT', '/invoice-settings', {
      numberPrefix: 'MRG',
      phiLevel: 'standard',
      letterhead,
    });
    expect(first).toMatchObject({ status: 200, body: { numberPrefix: 'MRG', phiLevel: 'standard', letterhead } });

    const second = await api(companyId, token, 'PUT', '/invoice-settings', { requireDownloadReason: true });
    expect(second.status).toBe(200);
    expect(second.body).toMatchObject({
      numberPrefix: 'MRG',
      phiLevel: 'standard',
      letterhead,
      requireDownloadReason: true,
    });

    const cleared = await api(companyId, token, 'PUT', '/invoice-settings', { letterhead: null });
    expect(cleared.body).toMatchObject({
      numberPrefix: 'MRG',
      letterhead: { name: 'Merge Street Clinic', address: [] },
      requireDownloadReason: true,
    });
    // An office's override is merged the same way.
    await api(companyId, token, 'PUT', '/offices/off_west/invoice-settings', { phiLevel: 'minimal' });
    const office = await api(companyId, token, 'PUT', '/offices/off_west/invoice-settings', {
      letterheadStyle: 'neutral',
    });
    expect(office.body).toMatchObject({ phiLevel: 'minimal', letterheadStyle: 'neutral' });
  });
});

describe('what a document prints about its payer (item 23)', () => {
  it('never prints a payer reference that is a record number, at any level; the same payer keeps one account number', async () => {
    const { companyId, token } = await clinic('Account Number Clinic');
    const mrn = 'MRN0048213';
    const texts: string[] = [];
    for (const level of ['minimal', 'standard'] as const) {
      expect((await api(companyId, token, 'PUT', '/invoice-settings', { phiLevel: level })).status).toBe(200);
      const payment = await insertPayment(system.ctx.db.models, {
        companyId,
        status: 'succeeded',
        customer: mrn,
        completedAt: new Date(),
      });
      const issued = (await invoicePayment(issueDeps(), payment))!;
      await stored(companyId, token, issued._id);
      texts.push(await downloadText(companyId, token, issued._id));
    }
    const accounts = texts.map((text) => /ACCT-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}/.exec(text)?.[0]);
    for (const text of texts) expect(text).not.toContain('0048213');
    expect(accounts[0]).toBeDefined();
    expect(accounts[1]).toBe(accounts[0]);
  }, 60_000);

  it('an office with the neutral letterhead style prints the company neutral letterhead, not its own name', async () => {
    const { companyId, token } = await clinic('Riverside Health');
    await api(companyId, token, 'PUT', '/invoice-settings', {
      neutralLetterhead: { name: 'RH Billing Services', address: ['PO Box 12'] },
    });
    await api(companyId, token, 'PUT', '/offices/off_onc/invoice-settings', {
      letterhead: { name: 'Riverside Oncology Center', address: ['9 Main St'] },
      letterheadStyle: 'neutral',
    });
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      officeId: 'off_onc',
      status: 'succeeded',
      completedAt: new Date(),
    });
    const issued = (await invoicePayment(issueDeps(), payment))!;
    await stored(companyId, token, issued._id);
    const text = await downloadText(companyId, token, issued._id);
    expect(text).toContain('RH Billing Services');
    expect(text).not.toContain('Oncology');
  }, 60_000);
});

describe('a render killed between storing the PDF and recording its hash (item 17)', () => {
  it('stays downloadable after the payer profile, PHI level and letterhead change', async () => {
    const { companyId, token } = await clinic('Half Render Clinic');
    await api(companyId, token, 'PUT', '/invoice-settings', { phiLevel: 'standard' });
    await api(companyId, token, 'PUT', '/payers/cus_HalfRenderPayer1', {
      name: 'Avery First',
      billingAddress: ['1 First St'],
      email: 'a@example.com',
    });
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      customer: 'cus_HalfRenderPayer1',
      completedAt: new Date(),
    });
    const issued = (await invoicePayment({ ...issueDeps(), enqueueRender: async () => {} }, payment))!;

    // The first render stores its bytes, then its process dies before the invoice records them.
    const { models } = system.ctx.db;
    const dying = new Proxy(models.Invoice, {
      get(target, property, receiver) {
        if (property === 'updateOne') return () => Promise.reject(new Error('worker killed'));
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    await expect(
      renderInvoiceDocument(
        {
          models: { ...models, Invoice: dying },
          numbering: system.ctx.db.invoiceNumbering,
          documents: system.ctx.db.invoiceDocuments,
          encryption: system.ctx.db.encryption,
          render: (view) => renderInvoicePdf(view),
          enqueueAudit: async () => {},
          logger: system.ctx.logger,
        },
        issued._id,
      ),
    ).rejects.toThrow('worker killed');

    // Everything the document shows changes before the retry renders it again.
    await api(companyId, token, 'PUT', '/payers/cus_HalfRenderPayer1', {
      name: 'Blake Second',
      billingAddress: ['2 Second St'],
      email: 'b@example.com',
    });
    await api(companyId, token, 'PUT', '/invoice-settings', {
      phiLevel: 'minimal',
      letterhead: { name: 'Renamed Clinic', address: [] },
    });
    await enqueueInvoiceRender(system.ctx.queues.invoices, { invoiceId: issued._id });
    await stored(companyId, token, issued._id);
    // The bytes stored first are the document; they pass their integrity check.
    const text = await downloadText(companyId, token, issued._id);
    expect(text).toContain('Avery First');
  }, 60_000);
});

describe('an uncollectible period collected later (item 16) and a failed adjustment (item 15)', () => {
  it('its uncollectible invoice becomes paid, with a new document that says PAID', async () => {
    const { companyId, token } = await clinic('Late Payment Clinic');
    const period = await subscriptionPeriod(companyId);
    const uncollectible = (await invoicePeriod(issueDeps(), period, 'uncollectible'))!;
    const first = await stored(companyId, token, uncollectible._id);
    expect(first).toMatchObject({ status: 'uncollectible', amountDue: 3000, amountPaid: 0 });
    // (The rotated status stamp does not read back as one word: the amounts say it.)
    expect(await downloadText(companyId, token, uncollectible._id)).toMatch(
      /Amount paid\s+\$0\.00\s+Amount due\s+\$30\.00/,
    );

    const paidAt = new Date('2026-03-20T15:00:00Z');
    await invoicePeriod(issueDeps(), { ...period, status: 'paid', paidAt }, 'paid');
    const paid = await stored(companyId, token, uncollectible._id, (body) => body.status === 'paid');
    expect(paid).toMatchObject({ number: first.number, status: 'paid', amountPaid: 3000, amountDue: 0 });
    const text = await downloadText(companyId, token, uncollectible._id);
    expect(text).toMatch(/Amount paid\s+\$30\.00\s+Amount due\s+\$0\.00/);
    expect(text).toMatch(/P\s*A\s*I\s*D/);
  }, 60_000);

  it('a plan-change adjustment that could not be charged (carried to the next bill) gets no uncollectible invoice', async () => {
    const { companyId, token } = await clinic('Adjustment Clinic');
    const adjustment = await subscriptionPeriod(companyId, { kind: 'adjustment', amount: 1200, proration: 1200 });
    expect(await invoicePeriod(issueDeps(), adjustment, 'uncollectible')).toBeUndefined();
    const listed = await api(companyId, token, 'GET', '/invoices');
    expect(listed.body.items).toEqual([]);
  });
});

describe('POST invoices/:id/void (item 18)', () => {
  it('voids an uncollectible invoice, keeps its number used, stamps VOID, audits; a paid one is refused', async () => {
    const { companyId, token } = await clinic('Void Clinic');
    const period = await subscriptionPeriod(companyId);
    const invoice = (await invoicePeriod(issueDeps(), period, 'uncollectible'))!;
    await stored(companyId, token, invoice._id);

    const clerk = await system.token(companyId, ['billing_clerk']);
    expect((await api(companyId, clerk, 'POST', `/invoices/${invoice._id}/void`, {})).status).toBe(403);

    const voided = await api(companyId, token, 'POST', `/invoices/${invoice._id}/void`, { reason: 'forgiven' });
    expect(voided).toMatchObject({ status: 200, body: { status: 'void', number: invoice.number } });
    await stored(companyId, token, invoice._id, (body) => body.status === 'void');
    expect(await downloadText(companyId, token, invoice._id)).toContain('VOID');
    // Again: the same answer, nothing new.
    expect((await api(companyId, token, 'POST', `/invoices/${invoice._id}/void`, {})).body.status).toBe('void');
    const events = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, action: 'invoice.voided' }).lean(),
      (found) => found.length === 1,
      { what: 'the void to be audited' },
    );
    expect(events[0]).toMatchObject({
      reason: 'forgiven',
      changes: [{ field: 'status', before: 'uncollectible', after: 'void' }],
    });

    // The next invoice takes the next number: a voided number stays used.
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      completedAt: new Date(),
    });
    const next = (await invoicePayment(issueDeps(), payment))!;
    expect(next.sequence).toBe(invoice.sequence! + 1);
    expect(await api(companyId, token, 'POST', `/invoices/${next._id}/void`, {})).toMatchObject({
      status: 409,
      body: { error: { code: 'invoice_not_voidable' } },
    });
  }, 60_000);
});

describe('shredding racing a render (item 20)', () => {
  it('a render in flight when the company is shredded stores nothing and creates no new key', async () => {
    const { companyId } = await clinic('Racing Clinic');
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      completedAt: new Date(),
    });
    const issued = (await invoicePayment({ ...issueDeps(), enqueueRender: async () => {} }, payment))!;
    // A second process (its own key cache) renders; the company is shredded after the render checked it, before it
    // encrypted anything (here: while it reads the invoice settings).
    const other = await openDatabase(system.ctx.config);
    try {
      const settings = other.models.InvoiceSettings;
      const racing = new Proxy(settings, {
        get(target, property, receiver) {
          if (property !== 'findById') return Reflect.get(target, property, receiver) as unknown;
          return (...args: Parameters<typeof settings.findById>) => ({
            lean: async () => {
              await shredCompany(system.ctx.db, companyId);
              return target.findById(...args).lean();
            },
          });
        },
      });
      const outcome = await renderInvoiceDocument(
        {
          models: { ...other.models, InvoiceSettings: racing },
          numbering: other.invoiceNumbering,
          documents: other.invoiceDocuments,
          encryption: other.encryption,
          render: (view) => renderInvoicePdf(view),
          enqueueAudit: async () => {},
          logger: system.ctx.logger,
        },
        issued._id,
      );
      expect(outcome).toEqual({ outcome: 'company_shredded' });
    } finally {
      await other.close();
    }
    const [db, collection] = system.ctx.config.keyVaultNamespace.split('.');
    const keys = await system.ctx.rawMongo
      .db(db)
      .collection(collection!)
      .countDocuments({ keyAltNames: companyKeyAltName(companyId) });
    expect(keys).toBe(0);
    expect(await system.ctx.db.invoiceDocuments.get(issued._id, companyId)).toBeNull();
    await expect(system.ctx.db.encryption.encrypt(companyId, 'anything')).rejects.toThrow(/shredded/);
  }, 60_000);
});

describe('smaller ones (item 24)', () => {
  it('one payer is listed under one reference: a one-off payment by their cus_… id is invoiced under their reference', async () => {
    const { companyId, token } = await clinic('One Reference Clinic');
    const { encryption, models } = system.ctx.db;
    // The Customer made for payer-1042 when their card was saved (application/payment-methods).
    await models.StripeCustomer.create({
      _id: `scus_${ulid().toLowerCase()}`,
      companyId,
      configurationId: companyId,
      livemode: false,
      customerRef: 'payer-1042',
      stripeCustomerId: await encryption.encrypt(companyId, 'cus_OneRefPayer42'),
      stripeCustomerKey: await encryption.encrypt(companyId, 'cus_OneRefPayer42', 'deterministic'),
    });
    const payment = await insertPayment(models, {
      companyId,
      status: 'succeeded',
      customer: 'cus_OneRefPayer42',
      completedAt: new Date(),
    });
    const issued = (await invoicePayment(issueDeps(), payment))!;
    expect(issued.customerRef).toBe('payer-1042');
    const listed = await api(companyId, token, 'GET', '/invoices?customerRef=payer-1042');
    expect(listed.body.items.map((item: Json) => item.id)).toEqual([issued._id]);
  });

  it('an invoice.finalized that could not be queued is recorded once the sweep renders the document', async () => {
    const { companyId, token } = await clinic('Lost Event Clinic');
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      completedAt: new Date(),
    });
    await expect(
      invoicePayment({ ...issueDeps(), enqueueAudit: () => Promise.reject(new Error('redis down')) }, payment),
    ).rejects.toThrow('redis down');
    const invoiceId = invoiceIdFor({ type: 'payment', id: payment._id });
    await system.sweepNow();
    await stored(companyId, token, invoiceId);
    const finalized = await waitFor(
      () => system.ctx.db.models.AuditEvent.find({ companyId, action: 'invoice.finalized' }).lean(),
      (events) => events.length >= 1,
      { what: 'invoice.finalized to be recorded' },
    );
    expect(finalized).toHaveLength(1);
    expect(finalized[0]!.resource).toEqual({ type: 'invoice', id: invoiceId });
  }, 60_000);

  it('the document sweep is not starved by 500 older rows that stay pending', async () => {
    const { companyId: gone } = await clinic('Gone Clinic');
    await shredCompany(system.ctx.db, gone);
    const old = new Date(Date.now() - 86_400_000);
    await system.ctx.db.models.Invoice.collection.insertMany(
      Array.from({ length: 500 }, (_, i) => ({
        _id: `inv_${i.toString(16).padStart(32, '0')}` as never,
        companyId: gone,
        kind: 'invoice',
        status: 'paid',
        documentStatus: 'pending',
        createdAt: old,
        updatedAt: new Date(old.getTime() + i),
      })),
    );
    const { companyId, token } = await clinic('Behind The Queue Clinic');
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      completedAt: new Date(),
    });
    const lost = (await invoicePayment(
      { ...issueDeps(), enqueueRender: () => Promise.reject(new Error('down')) },
      payment,
    ))!;
    expect(lost.documentStatus).toBe('pending');
    for (let run = 0; run < 3; run += 1) await system.sweepNow();
    await stored(companyId, token, lost._id);
  }, 60_000);

  it("a one-off invoice of a company without billing settings is dated in the company's time zone", async () => {
    const { companyId, token } = await clinic('Pacific Clinic');
    await api(companyId, token, 'PUT', '/invoice-settings', { timeZone: 'America/Los_Angeles' });
    // 03:00 UTC on June 2 is still June 1 in Los Angeles.
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      completedAt: new Date('2026-06-02T03:00:00Z'),
    });
    const issued = (await invoicePayment(issueDeps(), payment))!;
    const shown = await stored(companyId, token, issued._id);
    expect(shown.issuedOn).toBe('2026-06-01');
  }, 60_000);

  it('a period whose bill a plan-change credit lowered has no negative line, and its lines add up', async () => {
    const { companyId } = await clinic('Guarded Clinic');
    const broken = await subscriptionPeriod(companyId, { amount: 1000, proration: -2500, status: 'paid' });
    const issued = await invoicePeriod(issueDeps(), broken, 'paid');
    expect(issued?.lines.every((line) => line.amount >= 0)).toBe(true);
    expect(issued?.lines.reduce((sum, line) => sum + line.amount, 0)).toBe(issued?.total);
    expect(issued?.total).toBe(1000);
  });
});
