import type { Job } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import { applyRefundToLedger } from '../../models/refund-ledger.model';
import type { RefundRecord } from '../../models/refund.model';
import type { WebhookEventRecord } from '../../models/webhook-event.model';
import { createLogger } from '../../platform/logger';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import type { StripeEventDeps } from '../../workers/stripe-events/handler';
import { applyRefundEvent } from '../../workers/stripe-events/refund-events';
import { aRefund, COMPANY_ID, FakeCollection, PAYMENT_ID, REFUND_ID } from './support/fake-records';

// The ledger (sequenced appends) has its own integration test; here it records what it was asked.
jest.mock('../../models/refund-ledger.model', () => ({
  ...jest.requireActual('../../models/refund-ledger.model'),
  applyRefundToLedger: jest.fn(),
}));
const ledger = jest.mocked(applyRefundToLedger);

const AUDIT_KEY = 'evt_unit1';

function setup(refund: Partial<RefundRecord>) {
  const refunds = new FakeCollection<RefundRecord>([aRefund(refund)]);
  const audit: AuditEventInput[] = [];
  // The company's configuration serves the refund (company mode, a test key): its events are bound to it.
  const companies = new FakeCollection([
    {
      _id: COMPANY_ID,
      payment_info: {
        mode: 'company',
        credentials: { secretKey: 'sk_test_unit', webhookSigningSecrets: ['whsec_unit'] },
      },
    },
  ]);
  const deps = {
    models: { Refund: refunds, RefundLedger: {}, Company: companies, Office: new FakeCollection() },
    enqueueAudit: (event: AuditEventInput) => {
      audit.push(event);
      return Promise.resolve();
    },
    logger: createLogger({ level: 'silent', name: 'refund-events-test' }),
  } as unknown as StripeEventDeps;
  const row = { _id: AUDIT_KEY, companyId: COMPANY_ID, livemode: false, created: new Date() } as WebhookEventRecord;
  /** Hands the handler one Stripe Refund object, as the stripe-events worker does for `refund.updated`. */
  const deliver = (object: Record<string, unknown>, options: { companyId?: string; auditKey?: string } = {}) =>
    applyRefundEvent({
      row: { ...row, companyId: options.companyId ?? COMPANY_ID },
      object,
      auditKey: options.auditKey ?? AUDIT_KEY,
      job: { id: `stripe-event-${AUDIT_KEY}` } as Job<StripeEventJob>,
      deps,
    });
  const stored = () => refunds.get(REFUND_ID)!;
  return { deliver, stored, refunds, audit, actions: () => audit.map((event) => event.action) };
}

const stripeRefund = (status: string, extra: Record<string, unknown> = {}) => ({
  id: 're_unit',
  object: 'refund',
  status,
  metadata: { refund_id: REFUND_ID, payment_id: PAYMENT_ID },
  ...extra,
});

beforeEach(() => {
  jest.resetAllMocks();
  ledger.mockResolvedValue(undefined);
});

describe('Stripe refund events move our refund through the moveRefund use case', () => {
  it('refund.updated succeeded moves a refund in flight: ledger first, then the record, then the audit event', async () => {
    const { deliver, stored, audit, actions } = setup({ status: 'pending', stripeRefundId: 're_unit' });

    await expect(deliver(stripeRefund('succeeded'))).resolves.toMatchObject({
      status: 'applied',
      reason: 'refund_succeeded',
      resource: { type: 'refund', id: REFUND_ID },
      paymentId: PAYMENT_ID,
    });

    expect(stored()).toMatchObject({ status: 'succeeded', stripeRefundId: 're_unit', changedBy: AUDIT_KEY });
    expect(ledger).toHaveBeenCalledWith({}, expect.objectContaining({ _id: REFUND_ID, status: 'succeeded' }));
    expect(actions()).toEqual(['refund.succeeded']);
    expect(audit[0]).toMatchObject({
      actor: { type: 'system', id: 'stripe-events-worker' },
      jobId: `stripe-event-${AUDIT_KEY}`,
    });
  });

  it('a succeeded refund that the card network could not return becomes failed, with its reason code', async () => {
    const { deliver, stored, actions } = setup({ status: 'succeeded', stripeRefundId: 're_unit' });

    await expect(
      deliver(stripeRefund('failed', { failure_reason: 'expired_or_canceled_card' })),
    ).resolves.toMatchObject({ status: 'applied', reason: 'refund_failed' });
    expect(stored()).toMatchObject({ status: 'failed', failure: { code: 'expired_or_canceled_card' } });
    expect(actions()).toEqual(['refund.failed']);
  });

  it('a late pending never undoes a success', async () => {
    const { deliver, stored } = setup({ status: 'succeeded', stripeRefundId: 're_unit' });

    await expect(deliver(stripeRefund('pending'))).resolves.toMatchObject({
      status: 'ignored',
      reason: 'stale_transition',
    });
    expect(stored().status).toBe('succeeded');
  });

  it('a redelivery of the event that moved the refund is applied again (idempotent), not ignored', async () => {
    const { deliver, stored, actions } = setup({ status: 'pending', stripeRefundId: 're_unit' });
    await deliver(stripeRefund('succeeded'));

    await expect(deliver(stripeRefund('succeeded'))).resolves.toMatchObject({
      status: 'applied',
      reason: 'refund_succeeded',
    });
    expect(stored().status).toBe('succeeded');
    // The same deterministic audit event both times: the audit worker stores it once.
    expect(new Set(actions())).toEqual(new Set(['refund.succeeded']));
  });

  it("another company's refund is never touched, nor named in the outcome", async () => {
    const { deliver, stored, audit } = setup({ status: 'processing' });

    const outcome = await deliver(stripeRefund('succeeded'), { companyId: 'co_other' });

    expect(outcome).toEqual({ status: 'ignored', reason: 'company_mismatch' });
    expect(stored().status).toBe('processing');
    expect(ledger).not.toHaveBeenCalled();
    expect(audit).toEqual([]);
  });

  it('an event about another Stripe refund than the one recorded is ignored', async () => {
    const { deliver, stored } = setup({ status: 'pending', stripeRefundId: 're_recorded' });

    await expect(deliver(stripeRefund('succeeded'))).resolves.toMatchObject({
      status: 'ignored',
      reason: 'refund_mismatch',
    });
    expect(stored().status).toBe('pending');
  });

  it('an event for a refund whose Stripe refund id we never recorded is ignored (refund_unknown), and changes nothing', async () => {
    const { deliver, stored } = setup({ status: 'processing' });

    await expect(deliver(stripeRefund('succeeded'))).resolves.toMatchObject({
      status: 'ignored',
      reason: 'refund_unknown',
      resource: { type: 'refund', id: REFUND_ID },
    });
    expect(stored().status).toBe('processing');
    expect(stored().stripeRefundId).toBeUndefined();
    expect(ledger).not.toHaveBeenCalled();
  });

  it('a refund made outside this API (no refund id of ours) is left to charge.refunded', async () => {
    const { deliver, audit } = setup({ status: 'processing' });
    await expect(deliver(stripeRefund('succeeded', { metadata: {} }))).resolves.toEqual({
      status: 'ignored',
      reason: 'refund_not_ours',
    });
    expect(audit).toEqual([]);
  });

  it('losing the conditional write to a racing writer decides again on the new state', async () => {
    const { deliver, stored, refunds } = setup({ status: 'processing', stripeRefundId: 're_unit' });
    let raced = false;
    refunds.beforeUpdate = (collection) => {
      if (raced) return;
      raced = true;
      // The refunds worker records Stripe's first answer between our read and our write.
      collection.docs.get(REFUND_ID)!.status = 'pending';
    };

    await expect(deliver(stripeRefund('succeeded'))).resolves.toMatchObject({
      status: 'applied',
      reason: 'refund_succeeded',
    });
    expect(stored().status).toBe('succeeded');
  });
});
