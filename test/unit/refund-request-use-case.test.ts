import type { AuditEventInput } from '../../domain/audit-event';
import { refundRequestHash } from '../../domain/refund-request';
import { requestRefund, type RequestRefundDeps } from '../../application/refunds/request-refund';
import {
  holdRefund,
  LedgerBusyError,
  markHoldRecorded,
  releaseHold,
  type RefundTotals,
} from '../../models/refund-ledger.model';
import type { RefundRecord } from '../../models/refund.model';
import type { RefundJob } from '../../queues/refunds.queue';
import { aPayment, aRefund, COMPANY_ID, FakeCollection, PAYMENT_ID } from './support/fake-records';

jest.mock('../../models/refund-ledger.model', () => ({
  ...jest.requireActual('../../models/refund-ledger.model'),
  holdRefund: jest.fn(),
  markHoldRecorded: jest.fn(),
  releaseHold: jest.fn(),
}));
const hold = jest.mocked(holdRefund);
const totals = (reserved: number): RefundTotals => ({ reserved, refunded: 0 }) as RefundTotals;

const BODY = { amount: 2_500, reason: 'requested_by_customer' as const };

function setup(existing: RefundRecord[] = []) {
  const refunds = new FakeCollection<RefundRecord>(existing);
  const queued: { job: RefundJob; audit: AuditEventInput }[] = [];
  const deps: RequestRefundDeps = {
    models: { Refund: refunds, RefundLedger: {} } as unknown as RequestRefundDeps['models'],
    enqueueRefund: (job, audit) => {
      queued.push({ job, audit });
      return Promise.resolve();
    },
  };
  const request = (overrides: Partial<Parameters<typeof requestRefund>[1]> = {}) =>
    requestRefund(deps, {
      payment: aPayment(),
      idempotencyKey: 'key-refund',
      request: BODY,
      requestedBy: { type: 'user', id: 'usr_unit' },
      requestId: 'req_refund',
      ...overrides,
    });
  return { refunds, queued, request, deps };
}

beforeEach(() => {
  jest.resetAllMocks();
  hold.mockResolvedValue({ result: 'held', totals: totals(2_500) });
});

describe('requesting a refund', () => {
  it('holds the amount, records the refund, marks the hold recorded and queues it with refund.requested', async () => {
    const { request, refunds, queued } = setup();

    const result = await request();

    expect(result).toMatchObject({ outcome: 'accepted', replayed: false, refund: { status: 'queued', amount: 2_500 } });
    const refund = result.outcome === 'accepted' ? result.refund : undefined;
    expect(refunds.get(refund!._id)).toMatchObject({ companyId: COMPANY_ID, paymentId: PAYMENT_ID, attempts: 0 });
    expect(hold).toHaveBeenCalledWith({}, expect.objectContaining({ _id: PAYMENT_ID }), {
      refundId: refund!._id,
      amount: 2_500,
      unrecorded: true,
    });
    expect(jest.mocked(markHoldRecorded)).toHaveBeenCalledWith({}, refund!._id);
    expect(queued).toEqual([
      {
        job: { refundId: refund!._id, requestId: 'req_refund' },
        audit: expect.objectContaining({ action: 'refund.requested', actor: { type: 'user', id: 'usr_unit' } }),
      },
    ]);
  });

  it('a retry with the same key and body is the same refund, replayed, and queued again while it is queued', async () => {
    const { request, queued } = setup();
    const first = await request();
    const again = await request();
    expect(again).toMatchObject({ outcome: 'accepted', replayed: true });
    const ids = [first, again].map((result) => (result.outcome === 'accepted' ? result.refund._id : undefined));
    expect(ids[1]).toBe(ids[0]);
    expect(queued).toHaveLength(2);
    expect(hold).toHaveBeenCalledTimes(1);
  });

  it('a refund already handed to the worker is answered, not queued again', async () => {
    const hash = refundRequestHash(PAYMENT_ID, BODY);
    const { request, queued } = setup([aRefund({ requestHash: hash, status: 'pending' })]);
    await expect(request()).resolves.toMatchObject({ outcome: 'accepted', replayed: true });
    expect(queued).toEqual([]);
  });

  it('the same key with another body is a key conflict, and nothing is held', async () => {
    const { request } = setup([aRefund({ requestHash: 'another request' })]);
    await expect(request()).resolves.toEqual({ outcome: 'key_conflict' });
    expect(hold).not.toHaveBeenCalled();
  });

  it('only a succeeded payment is refundable', async () => {
    const { request } = setup();
    await expect(request({ payment: aPayment({ status: 'processing' }) })).resolves.toEqual({
      outcome: 'not_refundable',
    });
    expect(hold).not.toHaveBeenCalled();
  });

  it('more than is left to refund records nothing and says how much is left', async () => {
    const { request, refunds, queued } = setup();
    hold.mockResolvedValue({ result: 'exceeds', totals: totals(9_000) });
    await expect(request()).resolves.toEqual({ outcome: 'exceeds', refundable: 1_000 });
    expect(refunds.docs.size).toBe(0);
    expect(queued).toEqual([]);
  });

  it('a busy ledger is busy (the caller may retry with the same key)', async () => {
    const { request } = setup();
    hold.mockRejectedValue(new LedgerBusyError(PAYMENT_ID));
    await expect(request()).resolves.toEqual({ outcome: 'busy' });
  });

  it('losing the record to a concurrent request with another body releases this hold', async () => {
    const { request, refunds } = setup();
    hold.mockImplementation((_ledger, _payment, refund) => {
      // A concurrent request with this key and another body records its refund first.
      void refunds.create(aRefund({ _id: refund.refundId, requestHash: 'another request' }));
      return Promise.resolve({ result: 'held', totals: totals(2_500) });
    });
    await expect(request()).resolves.toEqual({ outcome: 'key_conflict' });
    expect(jest.mocked(releaseHold)).toHaveBeenCalledWith(
      {},
      { paymentId: PAYMENT_ID, companyId: COMPANY_ID },
      expect.any(String),
    );
  });

  it('an enqueue that fails fails the request (the refund stays recorded for the outbox sweep)', async () => {
    const { request, refunds, deps } = setup();
    deps.enqueueRefund = () => Promise.reject(new Error('redis down'));
    await expect(request()).rejects.toThrow('redis down');
    expect(refunds.docs.size).toBe(1);
  });
});
