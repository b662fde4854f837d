import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Binary } from 'mongodb';
import { ulid } from 'ulid';
import { finalizeInvoice, invoicePayment, type IssueInvoiceDeps } from '../../application/invoices/issue-invoice';
import type { AuditEventInput } from '../../domain/audit-event';
import { invoiceIdFor } from '../../domain/invoice-number';
import { openDatabase } from '../../models';
import { createCompany, shredCompany } from '../../models/companies';
import { isShreddedDataError } from '../../models/encryption';
import { InvoiceNumbering } from '../../models/invoice-number.model';
import type { InvoiceRecord } from '../../models/invoice.model';
import type { PaymentRecord } from '../../models/payment.model';
import { savedPaymentMethodId } from '../../models/saved-payment-method.model';
import { enqueueInvoiceRender } from '../../queues/invoices.queue';
import { waitFor } from '../support/harness';
import { startInProcessSystem, type InProcessSystem } from '../support/in-process';
import { assertBuildIsCurrent } from '../support/processes';
import { insertPayment } from '../support/records';
import { configureStripeWebhooks, deliverSigned, stripeEventEnvelope } from '../support/stripe-events';

/** Issue 14: invoices and credit notes: records, numbering, the rendered and stored document, the API. */
let system: InProcessSystem;
let companyId: string;
let admin: string;
let pdfDir: string;

type Json = Record<string, any>;
const PAYER = 'cus_InvoicePayer01';
const WEBHOOK_SECRET = 'whsec_InvoicesWebhookSecret01';
const YEAR = new Date().getUTCFullYear();

async function api(
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string>; company?: string } = {},
) {
  const headers: Record<string, string> = { authorization: `Bearer ${options.token ?? admin}`, ...options.headers };
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (method === 'POST') headers['idempotency-key'] = `invoice-test-${ulid()}`;
  const response = await fetch(`${system.url}/v1/companies/${options.company ?? companyId}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const type = response.headers.get('content-type') ?? '';
  if (type.startsWith('application/pdf')) {
    return {
      status: response.status,
      headers: response.headers,
      body: {} as Json,
      pdf: Buffer.from(await response.arrayBuffer()),
    };
  }
  return { status: response.status, headers: response.headers, body: (await response.json()) as Json, pdf: undefined };
}

/** A one-off payment charged through the whole path (sim → stripe-mock), settled. */
async function charge(amount: number, extra: Json = {}) {
  const created = await api('POST', '/payments', {
    body: { amount, currency: 'usd', customer: PAYER, paymentMethod: 'pm_card_visa', ...extra },
  });
  expect(created.status).toBe(202);
  const paymentId = created.body.id as string;
  await waitFor(
    () => api('GET', `/payments/${paymentId}`),
    (r) => r.body.status === 'succeeded',
    { what: `payment ${paymentId} to succeed` },
  );
  return paymentId;
}

/** The invoice (or credit note) of a source, once its document is stored. */
async function storedDocument(path: 'invoices' | 'credit-notes', id: string, company = companyId, token = admin) {
  const found = await waitFor(
    () => api('GET', `/${path}/${id}`, { company, token }),
    (r) => r.status === 200 && r.body.document?.status === 'stored',
    { what: `${path} ${id} to be stored`, timeoutMs: 30_000 },
  );
  return found.body;
}

function pdfText(pdf: Buffer): string {
  const file = join(pdfDir, `${ulid()}.pdf`);
  writeFileSync(file, pdf);
  return execFileSync('pdftotext', ['-layout', file, '-'], { encoding: 'utf8' });
}

async function auditEvents(
  resourceId: string,
  company = companyId,
  until: (actions: string[]) => boolean = () => true,
) {
  return waitFor(
    () => system.ctx.db.models.AuditEvent.find({ companyId: company, 'resource.id': resourceId }).lean(),
    (events) => until(events.map((event) => event.action)),
    { what: `audit events of ${resourceId}` },
  );
}

function issueDeps(): IssueInvoiceDeps & { audited: AuditEventInput[] } {
  const audited: AuditEventInput[] = [];
  return {
    models: system.ctx.db.models,
    numbering: system.ctx.db.invoiceNumbering,
    enqueueAudit: async (event) => {
      audited.push(event);
    },
    enqueueRender: (invoiceId) => enqueueInvoiceRender(system.ctx.queues.invoices, { invoiceId }),
    logger: system.ctx.logger,
    audited,
  };
}

beforeAll(async () => {
  assertBuildIsCurrent();
  pdfDir = mkdtempSync(join(tmpdir(), 'hb-invoices-'));
  system = await startInProcessSystem('invoices');
  companyId = await createCompany(system.ctx.db, { name: 'Riverside Family Medicine' });
  admin = await system.token(companyId, ['company_admin'], { subject: 'usr-invoice-admin' });
  await configureStripeWebhooks(system, companyId, admin, {
    secretKey: 'sk_test_51RiversideInvoices01',
    webhookSigningSecrets: [WEBHOOK_SECRET],
  });
  const settings = await api('PUT', '/invoice-settings', {
    body: {
      numberPrefix: 'DFP',
      phiLevel: 'standard',
      letterhead: { name: 'Riverside Family Medicine', address: ['12 Main Street', 'Springfield, IL 62701'] },
    },
  });
  expect(settings).toMatchObject({ status: 200, body: { numberPrefix: 'DFP', phiLevel: 'standard' } });
  const payer = await api('PUT', `/payers/${PAYER}`, {
    body: { name: 'Jordan Payer', billingAddress: ['44 Elm Street', 'Springfield, IL 62702'], email: 'jp@example.com' },
  });
  expect(payer.status).toBe(200);
}, 60_000);

afterAll(async () => {
  await system?.close();
  if (pdfDir) rmSync(pdfDir, { recursive: true, force: true });
});

describe('a one-off payment and its refund', () => {
  let invoice: Json;

  it('yields a paid invoice numbered PREFIX-YYYY-000001 whose PDF shows the number and the amount', async () => {
    const paymentId = await charge(12_345, { serviceCategory: 'office_visit' });
    invoice = await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    expect(invoice).toMatchObject({
      kind: 'invoice',
      number: `DFP-${YEAR}-000001`,
      status: 'paid',
      customerRef: PAYER,
      paymentId,
      total: 12_345,
      amountPaid: 12_345,
      amountDue: 0,
      lines: [{ code: 'office_visit', description: 'Office visit', quantity: 1, amount: 12_345 }],
    });

    const download = await api('GET', `/invoices/${invoice.id}/pdf`);
    expect(download.status).toBe(200);
    expect(download.headers.get('content-disposition')).toContain(`DFP-${YEAR}-000001.pdf`);
    const text = pdfText(download.pdf!);
    expect(text).toContain(`DFP-${YEAR}-000001`);
    expect(text).toContain('$123.45');
    expect(text).toContain('Office visit');
    // Standard PHI level: the payer's name and address, never the email.
    expect(text).toContain('Jordan Payer');
    expect(text).not.toContain('jp@example.com');

    const events = await auditEvents(invoice.id, companyId, (actions) => actions.includes('invoice.downloaded'));
    expect(events.map((event) => event.action)).toEqual(
      expect.arrayContaining(['invoice.finalized', 'invoice.rendered', 'invoice.downloaded']),
    );
    const downloaded = events.find((event) => event.action === 'invoice.downloaded')!;
    expect(downloaded.actor).toMatchObject({ type: 'user', id: 'usr-invoice-admin' });
  }, 60_000);

  it('a refund of it yields a credit note with its own sequence, naming the invoice', async () => {
    const refund = await api('POST', `/payments/${invoice.paymentId}/refunds`, {
      body: { amount: 2_345, reason: 'requested_by_customer' },
    });
    expect(refund.status).toBe(202);
    const refundId = refund.body.id as string;
    const listed = await waitFor(
      () => api('GET', `/credit-notes?customerRef=${PAYER}`),
      (r) => r.body.items?.some((note: Json) => note.refundId === refundId),
      { what: `credit note of ${refundId}`, timeoutMs: 30_000 },
    );
    const noteId = listed.body.items.find((note: Json) => note.refundId === refundId).id as string;
    const note = await storedDocument('credit-notes', noteId);
    expect(note).toMatchObject({
      kind: 'credit_note',
      number: `DFP-CN-${YEAR}-000001`,
      status: 'paid',
      creditsInvoiceId: invoice.id,
      total: 2_345,
    });
    const download = await api('GET', `/credit-notes/${noteId}/pdf`);
    expect(download.status).toBe(200);
    const text = pdfText(download.pdf!);
    expect(text).toContain(`DFP-CN-${YEAR}-000001`);
    expect(text).toContain(`DFP-${YEAR}-000001`);
    expect(text).toContain('$23.45');
    // A credit note is not an invoice: each has its own path.
    expect((await api('GET', `/invoices/${noteId}`)).status).toBe(400);
  }, 60_000);
});

describe('a subscription renewal under a test clock', () => {
  it('yields its invoice, "Membership — monthly", numbered in the year it was issued', async () => {
    const customerRef = 'payer-invoice-sub-01';
    const plan = await api('POST', '/plans', {
      body: {
        category: 'membership',
        name: 'Gold membership',
        amount: 3_000,
        currency: 'usd',
        interval: { unit: 'month', count: 1 },
      },
    });
    expect(plan.status).toBe(201);
    const methodId = savedPaymentMethodId(companyId, `seti_${ulid()}`);
    const { encryption, models } = system.ctx.db;
    await models.SavedPaymentMethod.create({
      _id: methodId,
      companyId,
      customerRef,
      stripeCustomerId: await encryption.encrypt(companyId, 'cus_payerInvoiceSub01'),
      stripePaymentMethodId: await encryption.encrypt(companyId, 'pm_card_visa'),
      usage: 'off_session',
      status: 'active',
      card: { brand: 'visa', last4: '4242', expMonth: 12, expYear: 2030 },
      savedBy: `test-${ulid()}`,
    });
    const clock = await api('POST', '/test-clocks', { body: { frozenTime: '2027-01-04T15:00:00Z' } });
    expect(clock.status).toBe(201);
    const sub = await api('POST', '/subscriptions', {
      body: { planId: plan.body.id, customerRef, paymentMethodId: methodId, testClockId: clock.body.id },
    });
    expect(sub.status).toBe(201);
    await waitFor(
      () => api('GET', `/subscriptions/${sub.body.id}`),
      (r) => r.body.status === 'active',
      { what: 'the subscription to be active' },
    );

    const advance = await api('POST', `/test-clocks/${clock.body.id}/advance`, {
      body: { frozenTime: '2027-02-04T16:00:00Z' },
    });
    expect(advance.status).toBe(202);
    const listed = await waitFor(
      () => api('GET', `/invoices?subscriptionId=${sub.body.id}`),
      (r) => r.body.items?.length === 2 && r.body.items.every((item: Json) => item.document.status === 'stored'),
      { what: 'both periods of the subscription to be invoiced', timeoutMs: 60_000 },
    );
    const [renewal, first] = listed.body.items as [Json, Json];
    expect(first).toMatchObject({ status: 'paid', period: { start: '2027-01-04T15:00:00.000Z' } });
    expect(renewal).toMatchObject({
      status: 'paid',
      total: 3_000,
      customerRef,
      issuedOn: '2027-02-04',
      period: { start: '2027-02-04T15:00:00.000Z', end: '2027-03-04T15:00:00.000Z' },
      lines: [{ description: 'Membership — monthly', amount: 3_000 }],
    });
    // One sequence per company, whatever the year printed: the year is the issue date's.
    expect([first.number, renewal.number]).toEqual([`DFP-2027-000002`, `DFP-2027-000003`]);
    const text = pdfText((await api('GET', `/invoices/${renewal.id}/pdf`)).pdf!);
    expect(text).toContain('Membership — monthly');
    expect(text).toContain('4242');
  }, 90_000);
});

describe('numbering', () => {
  async function drafts(company: string, count: number): Promise<InvoiceRecord[]> {
    const now = new Date();
    const records = Array.from({ length: count }, (_, i) => ({
      _id: invoiceIdFor({ type: 'payment', id: `pay_${ulid()}` }),
      companyId: company,
      kind: 'invoice' as const,
      status: 'draft' as const,
      source: { type: 'payment' as const, id: `pay_concurrent_${i}` },
      settleAs: 'paid' as const,
      customerRef: 'cus_Concurrent01',
      currency: 'usd',
      lines: [{ code: 'copay', description: 'Copay', quantity: 1, unitAmount: 2_500, amount: 2_500 }],
      subtotal: 2_500,
      total: 2_500,
      amountPaid: 2_500,
      amountDue: 0,
      issuedAt: now,
      timeZone: 'UTC',
      paidAt: now,
      documentStatus: 'pending' as const,
      createdAt: now,
      updatedAt: now,
    }));
    await system.ctx.db.models.Invoice.insertMany(records, { lean: true });
    return records;
  }

  it('gives 50 concurrent finalizations in one company 1..50 exactly, and another company its own 1..', async () => {
    const [busy, other] = [
      await createCompany(system.ctx.db, { name: 'Busy Clinic' }),
      await createCompany(system.ctx.db, { name: 'Quiet Clinic' }),
    ];
    const invoices = await drafts(busy, 50);
    const deps = issueDeps();
    // As from several worker processes: each has its own numbering (its own cached heads), one has no cache at all.
    const numberings = [
      system.ctx.db.invoiceNumbering,
      new InvoiceNumbering(system.ctx.db.models.InvoiceNumber),
      new InvoiceNumbering(system.ctx.db.models.InvoiceNumber),
      new InvoiceNumbering(system.ctx.db.models.InvoiceNumber, { cacheHeads: false }),
    ];
    const finalized = await Promise.all(
      invoices.map((invoice, i) =>
        finalizeInvoice({ ...deps, numbering: numberings[i % numberings.length]! }, invoice),
      ),
    );
    const sequences = finalized.map((invoice) => invoice.sequence!).sort((a, b) => a - b);
    expect(sequences).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(new Set(finalized.map((invoice) => invoice.number)).size).toBe(50);
    expect(finalized.every((invoice) => invoice.status === 'paid')).toBe(true);
    const stored = await system.ctx.db.models.Invoice.find({ companyId: busy }).lean();
    expect(stored.map((invoice) => invoice.sequence).sort((a, b) => a! - b!)).toEqual(sequences);

    // Finalizing again (a retry, the sweep) keeps the number; a second company starts at 1.
    const again = await finalizeInvoice(deps, { ...invoices[7]!, status: 'draft' });
    expect(again.number).toBe(finalized[7]!.number);
    const [first] = await Promise.all((await drafts(other, 2)).map((invoice) => finalizeInvoice(deps, invoice)));
    expect(first).toBeDefined();
    const otherSequences = (await system.ctx.db.models.Invoice.find({ companyId: other }).lean())
      .map((invoice) => invoice.sequence)
      .sort();
    expect(otherSequences).toEqual([1, 2]);
    expect(await system.ctx.db.models.InvoiceNumber.countDocuments({ key: `${busy}|invoice` })).toBe(50);
  }, 60_000);

  it('issues numbered in one insert: a run killed after taking its number, and runs racing one payment, leave no gap', async () => {
    const company = await createCompany(system.ctx.db, { name: 'Racing Clinic' });
    const deps = issueDeps();
    const paidAt = new Date();
    const payment = (i: number) =>
      ({
        _id: `pay_${ulid()}`,
        companyId: company,
        status: 'succeeded',
        amount: 1_000 + i,
        currency: 'usd',
        customer: 'cus_Racing01',
        paymentMethod: 'pm_card_visa',
        serviceCategory: 'office_visit',
        completedAt: paidAt,
        createdAt: paidAt,
        updatedAt: paidAt,
      }) as PaymentRecord;
    // A run that took the first payment's number, then was killed before its invoice was stored.
    const killed = payment(0);
    const killedId = invoiceIdFor({ type: 'payment', id: killed._id });
    expect(await system.ctx.db.invoiceNumbering.assign(company, 'invoice', killedId)).toBe(1);
    expect(await system.ctx.db.models.Invoice.findById(killedId).lean()).toBeNull();
    // Twenty payments, each issued three times at once from three processes (their own numberings), the killed
    // one's retry among them.
    const payments = [killed, ...Array.from({ length: 19 }, (_, i) => payment(i + 1))];
    const numberings = [
      system.ctx.db.invoiceNumbering,
      new InvoiceNumbering(system.ctx.db.models.InvoiceNumber),
      new InvoiceNumbering(system.ctx.db.models.InvoiceNumber, { cacheHeads: false }),
    ];
    const issued = await Promise.all(
      payments.flatMap((p) => numberings.map((numbering) => invoicePayment({ ...deps, numbering }, p))),
    );
    const stored = await system.ctx.db.models.Invoice.find({ companyId: company }).lean();
    expect(stored).toHaveLength(20);
    expect(stored.map((invoice) => invoice.sequence).sort((a, b) => a! - b!)).toEqual(
      Array.from({ length: 20 }, (_, i) => i + 1),
    );
    // The killed run's number is its invoice's; every racing run answers the stored invoice; each matches its money.
    expect(stored.find((invoice) => invoice._id === killedId)).toMatchObject({ sequence: 1, status: 'paid' });
    for (const invoice of issued) {
      const record = stored.find((row) => row._id === invoice!._id)!;
      expect(invoice).toMatchObject({ number: record.number, status: 'paid' });
    }
    for (const p of payments) {
      const record = stored.find((row) => row._id === invoiceIdFor({ type: 'payment', id: p._id }))!;
      expect(record).toMatchObject({ total: p.amount, amountPaid: p.amount, amountDue: 0 });
    }
    expect(await system.ctx.db.models.InvoiceNumber.countDocuments({ key: `${company}|invoice` })).toBe(20);
  }, 60_000);
});

describe('downloads', () => {
  it('refuses a stored document with a flipped byte, with the reason, audited at high severity', async () => {
    const paymentId = await charge(4_200, { serviceCategory: 'lab_services' });
    const invoice = await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    const documents = system.ctx.rawMongo.db(system.ctx.db.connection.name).collection('invoice_documents');
    const stored = await documents.findOne({ _id: invoice.id } as never);
    const bytes = Buffer.from((stored!.ciphertext as Binary).buffer);
    bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0x01;
    await documents.updateOne({ _id: invoice.id } as never, { $set: { ciphertext: new Binary(bytes, 6) } });

    const refused = await api('GET', `/invoices/${invoice.id}/pdf`);
    expect(refused).toMatchObject({ status: 500, body: { error: { code: 'document_integrity_failed' } } });
    const events = await auditEvents(invoice.id, companyId, (actions) => actions.includes('invoice.integrity_failed'));
    const failed = events.find((event) => event.action === 'invoice.integrity_failed')!;
    expect(failed).toMatchObject({ severity: 'high', outcome: 'failure', reason: 'document_integrity_failed' });
    expect(events.map((event) => event.action)).not.toContain('invoice.downloaded');
  }, 60_000);

  it('keeps office-scoped roles to their own offices', async () => {
    const paymentId = await charge(1_500, { serviceCategory: 'copay', officeId: 'east' });
    const invoice = await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    expect(invoice.officeId).toBe('east');
    const west = await system.token(companyId, ['office_manager'], { officeIds: ['west'], subject: 'usr-west' });
    const east = await system.token(companyId, ['billing_clerk'], { officeIds: ['east'], subject: 'usr-east' });

    expect(await api('GET', `/invoices/${invoice.id}/pdf`, { token: west })).toMatchObject({
      status: 403,
      body: { error: { code: 'office_out_of_scope' } },
    });
    const westList = await api('GET', '/invoices', { token: west });
    expect(westList.status).toBe(200);
    expect(westList.body.items.map((item: Json) => item.id)).not.toContain(invoice.id);
    const allowed = await api('GET', `/invoices/${invoice.id}/pdf`, { token: east });
    expect(allowed.status).toBe(200);
    expect(pdfText(allowed.pdf!)).toContain('$15.00');
    // A company-wide reader asking for one office gets that office's documents only.
    const westOnly = await api('GET', '/invoices?officeId=west&limit=100');
    expect(westOnly.status).toBe(200);
    expect(westOnly.body.items.map((item: Json) => item.id)).not.toContain(invoice.id);
    expect(westOnly.body.items.every((item: Json) => item.officeId === 'west')).toBe(true);
    const eastOnly = await api('GET', '/invoices?officeId=east&limit=100');
    expect(eastOnly.body.items.map((item: Json) => item.id)).toContain(invoice.id);
  }, 60_000);

  it('refuses unknown (possibly clinical) fields in a payer profile', async () => {
    const refused = await api('PUT', '/payers/payer-strict-01', {
      body: { name: 'A Payer', billingAddress: ['1 Road'], email: 'a@example.com', diagnosis: 'J45.909' },
    });
    expect(refused).toMatchObject({ status: 400, body: { error: { code: 'invalid_request' } } });
    expect(refused.body.error.details).toEqual([{ field: 'diagnosis', message: 'is not an accepted field' }]);
    const clerk = await system.token(companyId, ['billing_manager']);
    expect((await api('PUT', '/invoice-settings', { token: clerk, body: { phiLevel: 'standard' } })).status).toBe(403);
  });

  it('requires an access reason when the company says so, and seals it in the audit event', async () => {
    const clinic = await createCompany(system.ctx.db, { name: 'Careful Clinic' });
    const token = await system.token(clinic, ['company_admin'], { subject: 'usr-careful' });
    const set = await api('PUT', '/invoice-settings', {
      company: clinic,
      token,
      body: { requireDownloadReason: true },
    });
    expect(set).toMatchObject({ status: 200, body: { requireDownloadReason: true, numberPrefix: 'INV' } });
    const payment = await insertPayment(system.ctx.db.models, {
      companyId: clinic,
      status: 'succeeded',
      serviceCategory: 'telehealth_visit',
      completedAt: new Date(),
    });
    const issued = await invoicePayment(issueDeps(), payment);
    await storedDocument('invoices', issued!._id, clinic, token);

    const path = `/invoices/${issued!._id}/pdf`;
    expect(await api('GET', path, { company: clinic, token })).toMatchObject({
      status: 400,
      body: { error: { code: 'access_reason_required' } },
    });
    const given = await api('GET', path, {
      company: clinic,
      token,
      headers: { 'x-access-reason': 'Payer asked for a copy by phone' },
    });
    expect(given.status).toBe(200);
    expect(pdfText(given.pdf!)).toContain(`INV-${YEAR}-000001`);
    const events = await auditEvents(issued!._id, clinic, (actions) => actions.includes('invoice.downloaded'));
    const downloaded = events.find((event) => event.action === 'invoice.downloaded')!;
    // Stored as ciphertext under the clinic's key (read back decrypted here).
    expect(downloaded.actor.accessReason).toBe('Payer asked for a copy by phone');
    const raw = await system.ctx.rawMongo
      .db(system.ctx.db.connection.name)
      .collection('audit_events')
      .findOne({ _id: downloaded._id } as never);
    expect((raw!.actor as { accessReason: Binary }).accessReason.sub_type).toBe(6);
  }, 60_000);

  it("makes a shredded company's documents unreadable", async () => {
    const clinic = await createCompany(system.ctx.db, { name: 'Closing Clinic' });
    const token = await system.token(clinic, ['company_admin']);
    const payment = await insertPayment(system.ctx.db.models, {
      companyId: clinic,
      status: 'succeeded',
      completedAt: new Date(),
    });
    const issued = (await invoicePayment(issueDeps(), payment))!;
    await storedDocument('invoices', issued._id, clinic, token);
    expect((await api('GET', `/invoices/${issued._id}/pdf`, { company: clinic, token })).status).toBe(200);

    await shredCompany(system.ctx.db, clinic);
    expect(await api('GET', `/invoices/${issued._id}/pdf`, { company: clinic, token })).toMatchObject({
      status: 410,
      body: { error: { code: 'company_shredded' } },
    });
    // Not only refused: the stored bytes cannot be decrypted any more (a fresh client: libmongocrypt caches keys).
    const fresh = await openDatabase(system.ctx.config);
    try {
      const entry = await fresh.invoiceDocuments.get(issued._id, clinic);
      expect(entry).not.toBeNull();
      const error = await fresh.encryption.decrypt(entry!.ciphertext).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(isShreddedDataError(error)).toBe(true);
    } finally {
      await fresh.close();
    }
  }, 60_000);

  it('the outbox sweep queues a finalized document whose render job was lost', async () => {
    const payment = await insertPayment(system.ctx.db.models, {
      companyId,
      status: 'succeeded',
      serviceCategory: 'products',
      completedAt: new Date(),
    });
    const lost = issueDeps();
    const issued = (await invoicePayment(
      { ...lost, enqueueRender: () => Promise.reject(new Error('redis down')) },
      payment,
    ))!;
    expect(issued).toMatchObject({ status: 'paid', documentStatus: 'pending' });
    const swept = await system.sweepNow();
    expect(swept.requeued).toBeGreaterThanOrEqual(1);
    await storedDocument('invoices', issued._id);
  }, 60_000);
});

describe('money going back without a credit note of ours (issue 19 item 18)', () => {
  async function deliver(type: string, object: Json) {
    const event = stripeEventEnvelope(`evt_${ulid()}`, type, object);
    const response = await deliverSigned(system.url, companyId, event, { secret: WEBHOOK_SECRET });
    expect(response.status).toBe(200);
    return waitFor(
      () => system.ctx.db.models.WebhookEvent.findById(event.id, { payload: 0 }).lean(),
      (row) => Boolean(row && row.status !== 'received'),
      { what: `stripe event ${event.id} to be processed` },
    );
  }

  async function creditNotesOf(paymentId: string, count: number) {
    const found = await waitFor(
      () => api('GET', `/credit-notes?customerRef=${PAYER}&limit=100`),
      (r) => (r.body.items ?? []).filter((note: Json) => note.paymentId === paymentId).length >= count,
      { what: `${count} credit note(s) of ${paymentId}`, timeoutMs: 30_000 },
    );
    return (found.body.items as Json[]).filter((note) => note.paymentId === paymentId);
  }

  const intentOf = async (paymentId: string) =>
    (await system.ctx.db.models.Payment.findById(paymentId, { stripePaymentIntentId: 1 }).lean())!
      .stripePaymentIntentId!;

  it('a refund made in the Stripe dashboard gets a credit note, once, whichever events tell of it', async () => {
    const paymentId = await charge(4_000, { serviceCategory: 'office_visit' });
    await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    const refund = {
      id: `re_${ulid()}`,
      object: 'refund',
      amount: 1_500,
      currency: 'usd',
      status: 'succeeded',
      payment_intent: await intentOf(paymentId),
      metadata: {},
    };
    expect(await deliver('refund.created', refund)).toMatchObject({ status: 'applied' });
    await deliver('refund.updated', refund);
    const [note] = await creditNotesOf(paymentId, 1);
    expect(note).toMatchObject({
      status: 'paid',
      total: 1_500,
      creditsInvoiceId: invoiceIdFor({ type: 'payment', id: paymentId }),
    });
    const stored = await storedDocument('credit-notes', note!.id);
    expect(pdfText((await api('GET', `/credit-notes/${stored.id}/pdf`)).pdf!)).toContain('$15.00');
    expect(await creditNotesOf(paymentId, 1)).toHaveLength(1);
  }, 60_000);

  it('a refund that fails after it succeeded voids its credit note; its number stays used', async () => {
    const paymentId = await charge(5_000);
    await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    const requested = await api('POST', `/payments/${paymentId}/refunds`, {
      body: { amount: 2_000, reason: 'requested_by_customer' },
    });
    expect(requested.status).toBe(202);
    const refundId = requested.body.id as string;
    const [note] = await creditNotesOf(paymentId, 1);
    await storedDocument('credit-notes', note!.id);
    const stored = (await system.ctx.db.models.Refund.findById(refundId).lean())!;
    expect(stored.status).toBe('succeeded');

    await deliver('refund.updated', {
      id: stored.stripeRefundId,
      object: 'refund',
      amount: 2_000,
      currency: 'usd',
      status: 'failed',
      failure_reason: 'expired_or_canceled_card',
      metadata: { refund_id: refundId, payment_id: paymentId },
    });
    const voided = await waitFor(
      () => api('GET', `/credit-notes/${note!.id}`),
      (r) => r.body.status === 'void' && r.body.document?.status === 'stored',
      { what: 'the credit note to be voided', timeoutMs: 30_000 },
    );
    // Its number stays used.
    expect(voided.body).toMatchObject({ number: expect.stringMatching(/-CN-/), status: 'void' });
    const events = await auditEvents(note!.id, companyId, (actions) => actions.includes('credit_note.voided'));
    expect(events.find((event) => event.action === 'credit_note.voided')).toMatchObject({ reason: 'refund_failed' });
  }, 60_000);

  it('a lost dispute gets a credit note for the disputed amount', async () => {
    const paymentId = await charge(6_000);
    await storedDocument('invoices', invoiceIdFor({ type: 'payment', id: paymentId }));
    const intentId = await intentOf(paymentId);
    const dispute = (status: string) => ({
      id: `dp_${intentId.slice(3)}`,
      object: 'dispute',
      amount: 6_000,
      currency: 'usd',
      payment_intent: intentId,
      reason: 'fraudulent',
      status,
      created: Math.floor(Date.now() / 1000) - 60,
    });
    await deliver('charge.dispute.created', dispute('needs_response'));
    expect(await deliver('charge.dispute.closed', dispute('lost'))).toMatchObject({ status: 'applied' });
    const [note] = await creditNotesOf(paymentId, 1);
    expect(note).toMatchObject({ status: 'paid', total: 6_000 });
  }, 60_000);
});
