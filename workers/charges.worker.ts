import { type Job, type Worker } from 'bullmq';
import { attemptStartedEvent, paymentRequestedEvent } from '../domain/payment-audit';
import {
  GatewayError,
  type GatewayChargeSettings,
  type GatewayCredentials,
  type GatewayIntent,
  type PaymentGateway,
} from '../domain/payment-gateway';
import { isSettled } from '../domain/payment-status';
import { driverCollection, stamped } from '../models/connection';
import type { FieldEncryption } from '../models/encryption';
import type { Models } from '../models';
import type { PaymentRecord } from '../models/payment.model';
import type { SettingsReads } from '../models/settings-cache';
import type { Logger } from '../platform/logger';
import type { AuditEventInput } from '../domain/audit-event';
import { chargeJobSchema, type ChargeJob } from '../queues/charges.queue';
import { QUEUE_NAMES } from '../queues/names';
import { resolveGatewayAccess } from '../application/gateway-access';
import { auditPaymentOutcome, recordPaymentOutcome } from '../application/payments/record-outcome';
import { OutcomeAudit } from '../application/payments/outcome-audit';
import { decideCharge, type SettledOutcome } from '../domain/payment-outcome';
import { ACCOUNT_CHANGED, isSameGatewayAccount, type GatewayAccountRef } from '../domain/gateway-account';
import { createQueueWorker, JobFailedError, type JobContext, type QueueWorkerOptions } from './queue-worker';

export interface ChargeDeps {
  models: Pick<Models, 'Company' | 'Office' | 'Payment'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  gateway: PaymentGateway;
  enqueueAudit: (event: AuditEventInput) => Promise<void>;
  /**
   * Records several events of one outcome together: appended in the job, or queued as one audit job when that fails
   * (application/audit/append-events.ts). Without it, one audit job each.
   */
  sendAuditEvents?: (events: readonly AuditEventInput[]) => Promise<void>;
  /**
   * Told of every payment outcome recorded (a subscription's period payment renews its subscription, a one-off one is
   * invoiced), with the outcome's audit batch: its events go out with the outcome's, in one append.
   */
  onOutcome?: (payment: PaymentRecord, audit?: OutcomeAudit) => Promise<void>;
  /** The process's settings cache (models/settings-cache.ts). */
  settings?: SettingsReads;
  logger: Logger;
}

export interface ChargeResult {
  paymentId: string;
  status: PaymentRecord['status'];
}

const ACTOR: AuditEventInput['actor'] = { type: 'system', id: 'charge-worker' };

/** A payment recorded failed: retrying cannot change that. `code` is its failure code. */
class PaymentFailedError extends JobFailedError {
  constructor(paymentId: string, code: string) {
    super(code, `payment ${paymentId} failed: ${code}`);
  }
}

/**
 * Charges one payment. Safe to run any number of times for the same payment:
 * it re-reads state, creates at most one PaymentIntent (idempotency key = payment
 * id, and the intent id is saved before confirming), and a PaymentIntent can
 * succeed only once. Declines and bad configuration stop at once; network
 * errors, 5xx and 429 are thrown for BullMQ to retry with backoff.
 */
export async function processCharge(job: Job<ChargeJob>, deps: ChargeDeps, context: JobContext): Promise<ChargeResult> {
  const parsed = chargeJobSchema.safeParse(job.data);
  if (!parsed.success) throw new JobFailedError('invalid_payload', 'invalid charge job payload');
  // The request's and the outcome's events (a subscription's attempt, requested, settled, invoice finalized and
  // rendered, in that order) are sent together when the job ends, however it ends: a job that throws is retried (or
  // failed for good) only after they are appended (or queued), and a crash before that leaves the job to be run again,
  // which sends them again under their fixed ids. The api queues no audit job of its own for the request: this is the
  // one that sends `payment.requested`.
  const { sendAuditEvents } = deps;
  if (!sendAuditEvents) return chargePayment(parsed.data.paymentId, job, deps, context);
  const audit = new OutcomeAudit(sendAuditEvents);
  const batched: ChargeDeps = {
    ...deps,
    enqueueAudit: audit.add,
    ...(deps.onOutcome ? { onOutcome: (payment) => deps.onOutcome!(payment, audit) } : {}),
  };
  let result: ChargeResult;
  try {
    result = await chargePayment(parsed.data.paymentId, job, batched, context);
  } catch (error) {
    await audit.flush();
    throw error;
  }
  await audit.flush();
  return result;
}

/** The payment's request, after the subscription attempt it is (if it is one and records it), into the batch. */
async function sendRequested(deps: ChargeDeps, payment: PaymentRecord): Promise<void> {
  const attempt = attemptStartedEvent(payment);
  if (attempt) await deps.enqueueAudit(attempt);
  await deps.enqueueAudit(paymentRequestedEvent(payment));
}

async function chargePayment(
  paymentId: string,
  job: Job<ChargeJob>,
  deps: ChargeDeps,
  context: JobContext,
): Promise<ChargeResult> {
  const { Payment } = deps.models;
  const log = context.logger.child({ paymentId });

  // Claim first: the usual case needs no separate read. The requested event goes first into the outcome's batch, built
  // from the stored payment (the api's sealed context included): however the charge was queued (the api, the outbox
  // sweep after a lost add, a retry), its run sends it.
  const payment = await driverCollection<PaymentRecord>(Payment).findOneAndUpdate(
    { _id: paymentId, status: { $in: ['queued', 'processing'] } },
    stamped({ $set: { status: 'processing' as const }, $inc: { attempts: 1 } }),
    { returnDocument: 'after' },
  );
  if (!payment) {
    const stored = await Payment.findById(paymentId).lean();
    if (!stored) throw new JobFailedError('payment_not_found', `payment ${paymentId} not found`);
    await sendRequested(deps, stored);
    if (isSettled(stored.status)) {
      await auditPaymentOutcome(deps, stored, { actor: ACTOR, jobId: job.id });
      // What follows an outcome (a renewal, an invoice) is idempotent: told again, in case it failed the first time.
      await deps.onOutcome?.(stored);
      log.info({ status: stored.status }, 'payment already settled; nothing to do');
    }
    return { paymentId, status: stored.status };
  }
  await sendRequested(deps, payment);

  const settle = (outcome: SettledOutcome) => settlePayment(payment, outcome, job, deps, log);

  // A payment whose PaymentIntent is saved may have been charged (we confirm only a saved intent): then a problem
  // on our side, or a refusal that is not the card's, cannot make it failed, only `needs_attention`.
  const giveUp = async (failure: { code: string; message: string; declineCode?: string }, declined = false) => {
    const saved = await Payment.findById(paymentId, { stripePaymentIntentId: 1 }).lean();
    if (saved?.stripePaymentIntentId && !declined) {
      const { code, message } = failure;
      await settle({ status: 'needs_attention', attention: { code, message } });
      log.warn({ reason: code }, 'payment needs attention: the gateway may have charged it, and cannot be asked now');
      // Failed in the queue (ops see it there, with the code); the reconciliation sweep asks the gateway later.
      throw new JobFailedError(code, `payment ${paymentId} needs attention: ${code}`);
    }
    await settle({ status: 'failed', failure });
    throw new PaymentFailedError(paymentId, failure.code);
  };

  // Every charge uses the effective configuration (the company's, or the office's where the mode says so), and a
  // retry only the gateway account its first call used.
  const target = { companyId: payment.companyId, officeId: payment.officeId };
  const access = await resolveGatewayAccess(deps.models, target, payment.gatewayAccount, deps.settings);
  if (!access.ok) return giveUp(access.failure);
  const { credentials, charge } = access;

  try {
    // The account is recorded with the PaymentIntent's id, in one write before anything is confirmed: nothing can be
    // charged through an account the payment does not name.
    const intent = await chargeIntent(payment, credentials, charge, access.account, deps);
    return await applyIntent(intent, settle, paymentId);
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    if (error.kind === 'declined' || error.kind === 'permanent') {
      const { code, message, declineCode } = error;
      return giveUp({ code, message, ...(declineCode ? { declineCode } : {}) }, error.kind === 'declined');
    }
    await Payment.updateOne({ _id: paymentId }, { $set: { lastError: error.code } });
    log.warn({ code: error.code }, 'transient gateway error; will retry');
    throw error;
  }
}

async function chargeIntent(
  payment: PaymentRecord,
  credentials: GatewayCredentials,
  charge: GatewayChargeSettings,
  account: GatewayAccountRef,
  deps: ChargeDeps,
): Promise<GatewayIntent> {
  const { gateway } = deps;
  let intentId = payment.stripePaymentIntentId;
  if (intentId) {
    // A retry: an earlier attempt may have confirmed already. Look before confirming again.
    const existing = await gateway.retrievePaymentIntent(credentials, intentId);
    if (
      existing.status !== 'requires_confirmation' &&
      !(existing.status === 'requires_payment_method' && !existing.lastError)
    ) {
      return existing;
    }
  } else {
    const created = await gateway.createPaymentIntent(credentials, {
      amount: payment.amount,
      currency: payment.currency,
      customer: payment.customer,
      paymentMethod: payment.paymentMethod,
      // No office id: the office may be named for the kind of care; the payment record keeps it.
      metadata: { payment_id: payment._id, company_id: payment.companyId },
      ...(charge.statementDescriptor ? { statementDescriptor: charge.statementDescriptor } : {}),
      idempotencyKey: payment._id,
    });
    // Saved before confirming: after Stripe's 24-hour idempotency window only this record prevents a second intent.
    const recorded = await driverCollection<PaymentRecord>(deps.models.Payment).updateOne(
      { _id: payment._id, stripePaymentIntentId: { $exists: false } },
      stamped({ $set: { stripePaymentIntentId: created.id, gatewayAccount: payment.gatewayAccount ?? account } }),
    );
    // Not recorded: an earlier attempt (after a stall) saved an intent id first, and that one is charged, through the
    // account it recorded and no other.
    const saved =
      recorded.matchedCount > 0
        ? undefined
        : await deps.models.Payment.findById(payment._id, { stripePaymentIntentId: 1, gatewayAccount: 1 }).lean();
    if (saved?.gatewayAccount && !isSameGatewayAccount(saved.gatewayAccount, account)) {
      throw new GatewayError('permanent', ACCOUNT_CHANGED.code, ACCOUNT_CHANGED.message);
    }
    intentId = saved?.stripePaymentIntentId ?? created.id;
  }
  try {
    // Keyed per attempt: Stripe replays a stored error for a reused key, and an intent can succeed only once anyway.
    return await gateway.confirmPaymentIntent(credentials, {
      intentId,
      paymentMethod: payment.paymentMethod,
      ...(payment.subscription ? { offSession: true } : {}),
      idempotencyKey: `${payment._id}-confirm-${payment.attempts}`,
    });
  } catch (error) {
    if (error instanceof GatewayError && error.kind === 'unexpected_state') {
      return gateway.retrievePaymentIntent(credentials, intentId);
    }
    throw error;
  }
}

async function applyIntent(
  intent: GatewayIntent,
  settle: (outcome: SettledOutcome) => Promise<ChargeResult>,
  paymentId: string,
): Promise<ChargeResult> {
  const decision = decideCharge(intent);
  switch (decision.action) {
    case 'record': {
      const result = await settle(decision.outcome);
      if (decision.outcome.status === 'failed') throw new PaymentFailedError(paymentId, decision.outcome.failure.code);
      return result;
    }
    case 'wait':
      return { paymentId, status: 'processing' };
    case 'retry':
      throw new GatewayError('transient', decision.code, 'the payment intent is still awaiting confirmation');
  }
}

async function settlePayment(
  payment: PaymentRecord,
  outcome: SettledOutcome,
  job: Job<ChargeJob>,
  deps: ChargeDeps,
  log: Logger,
): Promise<ChargeResult> {
  const source = { actor: ACTOR, jobId: job.id };
  const settled = await recordPaymentOutcome(deps, payment, 'processing', outcome, source);
  // Not settled here: a webhook got there first. Its outcome stands, and is audited (again: same event id).
  const current = settled ?? (await deps.models.Payment.findById(payment._id).lean());
  if (!current) throw new JobFailedError('payment_not_found', `payment ${payment._id} disappeared`);
  if (!settled) await auditPaymentOutcome(deps, current, source);
  log.info({ status: current.status, reason: current.failure?.code }, 'payment settled');
  return { paymentId: payment._id, status: current.status };
}

export function createChargesWorker(deps: ChargeDeps & QueueWorkerOptions): Worker<ChargeJob, ChargeResult> {
  return createQueueWorker(QUEUE_NAMES.charges, processCharge, deps);
}
