import { UnrecoverableError, type Job } from 'bullmq';
import type { AuditEventInput } from '../../domain/audit-event';
import { GatewayError, type GatewayRefund, type PaymentGateway } from '../../domain/payment-gateway';
import type { PaymentRecord } from '../../models/payment.model';
import type { RefundRecord } from '../../models/refund.model';
import { createLogger } from '../../platform/logger';
import type { RefundJob } from '../../queues/refunds.queue';
import { processRefund, RefundFailedError, type RefundDeps } from '../../workers/refunds.worker';
import { reasonCodeError } from '../../workers/queue-worker';
import { resolveGatewayAccess } from '../../application/gateway-access';
import { applyRefundToLedger, holdRefund } from '../../models/refund-ledger.model';
import { aPayment, aRefund, FakeCollection, REFUND_ID } from './support/fake-records';

// The ledger (sequenced appends) and the payment configuration have their own tests; here they answer as told.
jest.mock('../../models/refund-ledger.model', () => ({
  ...jest.requireActual('../../models/refund-ledger.model'),
  holdRefund: jest.fn(),
  applyRefundToLedger: jest.fn(),
}));
jest.mock('../../application/gateway-access', () => ({ resolveGatewayAccess: jest.fn() }));
const hold = jest.mocked(holdRefund);
const ledger = jest.mocked(applyRefundToLedger);
const access = jest.mocked(resolveGatewayAccess);

const logger = createLogger({ level: 'silent', name: 'refund-sending-test' });

function setup(options: { refund?: Partial<RefundRecord>; payment?: Partial<PaymentRecord> } = {}) {
  const refunds = new FakeCollection<RefundRecord>([aRefund(options.refund)]);
  const payments = new FakeCollection<PaymentRecord>([aPayment(options.payment)]);
  const audit: AuditEventInput[] = [];
  const gateway = {
    createRefund: jest.fn<Promise<GatewayRefund>, Parameters<PaymentGateway['createRefund']>>(),
    findRefund: jest.fn<Promise<GatewayRefund | undefined>, Parameters<PaymentGateway['findRefund']>>(),
  };
  const deps: RefundDeps = {
    models: { Refund: refunds, Payment: payments, RefundLedger: {} } as unknown as RefundDeps['models'],
    gateway,
    enqueueAudit: (event) => {
      audit.push(event);
      return Promise.resolve();
    },
    logger,
  };
  const actions = () => audit.map((event) => event.action);
  const stored = () => refunds.get(REFUND_ID)!;
  return { deps, gateway, refunds, stored, audit, actions };
}

/** A job as BullMQ hands it to the processor (Medplum's way: no queue, no Redis). */
const job = (attemptsMade = 0) =>
  ({ id: `refund-${REFUND_ID}`, data: { refundId: REFUND_ID, requestId: 'req_unit' }, attemptsMade }) as Job<RefundJob>;
const run = (deps: RefundDeps, attemptsMade = 0) => processRefund(job(attemptsMade), deps, { logger });

async function failureOf(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => {
      throw new Error('the refund job should have failed');
    },
    (error: Error) => error,
  );
}

beforeEach(() => {
  jest.resetAllMocks();
  hold.mockResolvedValue({ result: 'already_held', totals: { reserved: 2_500, refunded: 0 } } as Awaited<
    ReturnType<typeof holdRefund>
  >);
  ledger.mockResolvedValue(undefined);
  access.mockResolvedValue({
    ok: true,
    credentials: { secretKey: 'sk_test_unit' },
    charge: {},
    account: { configurationId: 'co_unit', livemode: false },
  });
});

describe('a retry that cannot ask the gateway never records failed (issue 12 §1)', () => {
  // attempts: 1 stored, so this run is attempt 2: attempt 1 may have made the refund at Stripe.
  const retried = { refund: { attempts: 1 } };

  it('a configuration that lost its attestation leaves the refund needing attention, the money held', async () => {
    const { deps, gateway, stored, actions, audit } = setup(retried);
    access.mockResolvedValue({ ok: false, failure: { code: 'gateway_not_attested', message: 'no BAA' } });

    const error = await failureOf(run(deps, 1));

    expect(error).toBeInstanceOf(UnrecoverableError);
    expect(error).not.toBeInstanceOf(RefundFailedError);
    expect(gateway.findRefund).not.toHaveBeenCalled();
    expect(stored()).toMatchObject({ status: 'needs_attention', attention: { code: 'gateway_not_attested' } });
    expect(stored().completedAt).toBeUndefined();
    expect(ledger).not.toHaveBeenCalledWith(deps.models.RefundLedger, expect.objectContaining({ status: 'failed' }));
    expect(actions()).toEqual(['refund.requested', 'refund.needs_attention']);
    expect(audit[1]).toMatchObject({ outcome: 'failure', reason: 'gateway_not_attested' });
  });

  it('a key the gateway refuses while looking for the earlier refund leaves it needing attention', async () => {
    const { deps, gateway, stored } = setup(retried);
    gateway.findRefund.mockRejectedValue(new GatewayError('permanent', 'authentication_error', 'invalid key'));

    await failureOf(run(deps, 1));

    expect(gateway.createRefund).not.toHaveBeenCalled();
    expect(stored()).toMatchObject({ status: 'needs_attention', attention: { code: 'authentication_error' } });
  });

  it('Stripe refusing the refund itself (same idempotency key) is its answer: failed', async () => {
    const { deps, gateway, stored } = setup(retried);
    gateway.findRefund.mockResolvedValue(undefined);
    gateway.createRefund.mockRejectedValue(new GatewayError('permanent', 'charge_disputed', 'disputed'));

    await expect(run(deps, 1)).rejects.toBeInstanceOf(RefundFailedError);
    expect(stored()).toMatchObject({ status: 'failed', failure: { code: 'charge_disputed' } });
  });
});

describe('a refund the gateway refuses fails for good', () => {
  it('a card decline records the refund failed with the code, releases the hold, audits it, and is not retried', async () => {
    const { deps, gateway, stored, actions, audit } = setup();
    gateway.createRefund.mockRejectedValue(
      new GatewayError('permanent', 'charge_already_refunded', 'already refunded'),
    );

    const error = await failureOf(run(deps));

    expect(error).toBeInstanceOf(UnrecoverableError);
    expect(error).toBeInstanceOf(RefundFailedError);
    expect(stored()).toMatchObject({ status: 'failed', failure: { code: 'charge_already_refunded' }, attempts: 1 });
    expect(stored().completedAt).toBeInstanceOf(Date);
    // The hold goes back before the refund shows failed.
    expect(ledger).toHaveBeenCalledWith(deps.models.RefundLedger, expect.objectContaining({ status: 'failed' }));
    expect(actions()).toEqual(['refund.requested', 'refund.failed']);
    expect(audit[1]).toMatchObject({ reason: 'charge_already_refunded', actor: { id: 'refund-worker' } });
    // What BullMQ stores as the failed reason (through the one wrapper) is the failure code, never the message.
    expect(reasonCodeError(error)).toMatchObject({ message: 'charge_already_refunded' });
  });

  it('a configuration without attestation stops before anything reaches the gateway', async () => {
    const { deps, gateway, stored, actions } = setup();
    access.mockResolvedValue({ ok: false, failure: { code: 'gateway_not_attested', message: 'no BAA' } });

    const error = await failureOf(run(deps));

    expect(error).toBeInstanceOf(RefundFailedError);
    expect(gateway.createRefund).not.toHaveBeenCalled();
    expect(stored()).toMatchObject({ status: 'failed', failure: { code: 'gateway_not_attested' } });
    expect(actions()).toEqual(['refund.requested', 'refund.failed']);
  });

  it('a payment that has not that much left stops before the gateway (refund_exceeds_captured)', async () => {
    const { deps, gateway, stored } = setup();
    hold.mockResolvedValue({ result: 'exceeds', totals: { reserved: 9_000, refunded: 0 } } as Awaited<
      ReturnType<typeof holdRefund>
    >);

    await expect(run(deps)).rejects.toBeInstanceOf(RefundFailedError);
    expect(gateway.createRefund).not.toHaveBeenCalled();
    expect(stored().failure?.code).toBe('refund_exceeds_captured');
  });

  it('a refund the gateway reports failed is recorded failed with its reason code', async () => {
    const { deps, gateway, stored, actions } = setup();
    gateway.createRefund.mockResolvedValue({
      id: 're_unit',
      status: 'failed',
      amount: 2_500,
      failureReason: 'expired_or_canceled_card',
    });

    await expect(run(deps)).rejects.toBeInstanceOf(RefundFailedError);
    expect(stored()).toMatchObject({
      status: 'failed',
      stripeRefundId: 're_unit',
      failure: { code: 'expired_or_canceled_card' },
    });
    expect(actions()).toEqual(['refund.requested', 'refund.failed']);
  });

  it('a job for a refund that is not there is unrecoverable', async () => {
    const { deps, refunds } = setup();
    refunds.docs.clear();
    const error = await failureOf(run(deps));
    expect(error).toBeInstanceOf(UnrecoverableError);
    expect(error).not.toBeInstanceOf(RefundFailedError);
  });
});

describe('a transient gateway error is retried', () => {
  it('rethrows it as retryable, keeps the code as lastError, and neither fails nor audits the refund', async () => {
    const { deps, gateway, stored, actions } = setup();
    const outage = new GatewayError('transient', 'rate_limit', 'too many requests');
    gateway.createRefund.mockRejectedValue(outage);

    const error = await failureOf(run(deps));

    expect(error).toBe(outage);
    expect(error).not.toBeInstanceOf(UnrecoverableError);
    expect(stored()).toMatchObject({ status: 'processing', lastError: 'rate_limit', attempts: 1 });
    expect(stored().failure).toBeUndefined();
    expect(ledger).not.toHaveBeenCalledWith(expect.anything(), expect.objectContaining({ status: 'failed' }));
    expect(actions()).toEqual(['refund.requested']);
  });

  it('the retry first asks the gateway for the refund the earlier attempt may have made, and sends no second one', async () => {
    const { deps, gateway, stored, actions } = setup({
      refund: { status: 'processing', attempts: 1, lastError: 'rate_limit' },
    });
    gateway.findRefund.mockResolvedValue({ id: 're_earlier', status: 'succeeded', amount: 2_500 });

    await expect(run(deps, 1)).resolves.toEqual({ refundId: REFUND_ID, status: 'succeeded' });

    expect(gateway.findRefund).toHaveBeenCalledWith(
      { secretKey: 'sk_test_unit' },
      { paymentIntentId: 'pi_unit', refundId: REFUND_ID },
    );
    expect(gateway.createRefund).not.toHaveBeenCalled();
    expect(stored()).toMatchObject({ status: 'succeeded', stripeRefundId: 're_earlier', attempts: 2 });
    expect(stored().lastError).toBeUndefined();
    expect(actions()).toEqual(['refund.requested', 'refund.succeeded']);
  });
});

describe('what the gateway answers is recorded once', () => {
  it('a first attempt sends one refund keyed by the refund id and records its status', async () => {
    const { deps, gateway, stored } = setup();
    gateway.createRefund.mockResolvedValue({ id: 're_unit', status: 'pending', amount: 2_500 });

    await expect(run(deps)).resolves.toEqual({ refundId: REFUND_ID, status: 'pending' });
    expect(gateway.findRefund).not.toHaveBeenCalled();
    expect(gateway.createRefund).toHaveBeenCalledWith(
      { secretKey: 'sk_test_unit' },
      expect.objectContaining({ amount: 2_500, idempotencyKey: REFUND_ID, paymentIntentId: 'pi_unit' }),
    );
    expect(stored()).toMatchObject({ status: 'pending', stripeRefundId: 're_unit' });
  });

  it('a webhook that recorded a newer status first wins: the answer only adds the Stripe refund id', async () => {
    const { deps, gateway, refunds, stored, actions } = setup();
    gateway.createRefund.mockImplementation(() => {
      // refund.updated (succeeded) arrives while the create call is in flight.
      refunds.docs.get(REFUND_ID)!.status = 'succeeded';
      return Promise.resolve({ id: 're_unit', status: 'pending', amount: 2_500 });
    });

    await expect(run(deps)).resolves.toEqual({ refundId: REFUND_ID, status: 'succeeded' });
    expect(stored()).toMatchObject({ status: 'succeeded', stripeRefundId: 're_unit' });
    expect(actions()).toEqual(['refund.requested', 'refund.succeeded']);
  });

  it('a refund already handed over is only followed (ledger and audit), never sent again', async () => {
    const { deps, gateway } = setup({ refund: { status: 'succeeded', stripeRefundId: 're_unit' } });
    await expect(run(deps)).resolves.toEqual({ refundId: REFUND_ID, status: 'succeeded' });
    expect(gateway.createRefund).not.toHaveBeenCalled();
    expect(gateway.findRefund).not.toHaveBeenCalled();
    expect(ledger).toHaveBeenCalledWith(deps.models.RefundLedger, expect.objectContaining({ status: 'succeeded' }));
  });
});
