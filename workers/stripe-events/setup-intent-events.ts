import type { Job } from 'bullmq';
import { resolveGatewayAccess } from '../../application/gateway-access';
import { transitionEventId } from '../../domain/audit-actions';
import { GatewayError } from '../../domain/payment-gateway';
import { isDuplicateKeyError } from '../../models/errors';
import {
  isSavedCardDetails,
  savedPaymentMethodId,
  SAVED_PAYMENT_METHOD_USAGES,
  type SavedCardDetails,
  type SavedPaymentMethodRecord,
  type SavedPaymentMethodUsage,
} from '../../models/saved-payment-method.model';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import { bindEventToRecord } from './binding';
import { STRIPE_EVENTS_ACTOR, type EventOutcome, type StripeEventDeps, type StripeEventHandler } from './handler';

const SETUP_INTENT_ID = /^seti_[A-Za-z0-9]{1,255}$/;
const STRIPE_CUSTOMER_ID = /^cus_[A-Za-z0-9]{1,255}$/;
const PAYMENT_METHOD_ID = /^pm_[A-Za-z0-9_]{1,255}$/;
// Reading these would decrypt them; nothing here needs them once stored.
const WITHOUT_STRIPE_IDS = { stripeCustomerId: 0, stripePaymentMethodId: 0 } as const;

/** The parts of a SetupIntent (`data.object`) that are read here. Its metadata is not: our record says who and where. */
interface SetupIntentObject {
  id?: unknown;
  status?: unknown;
  usage?: unknown;
  /** An id, or the expanded object. */
  customer?: unknown;
  payment_method?: unknown;
}

/** Stripe sends a related object as its id, or expanded with an `id`. */
function stripeIdOf(value: unknown, pattern: RegExp): string | undefined {
  const id = value && typeof value === 'object' ? (value as { id?: unknown }).id : value;
  return typeof id === 'string' && pattern.test(id) ? id : undefined;
}

const ignored = (reason: string): EventOutcome => ({ status: 'ignored', reason });

const onMethod = (
  status: EventOutcome['status'],
  reason: string,
  method: Pick<SavedPaymentMethodRecord, '_id' | 'officeId'>,
): EventOutcome => ({
  status,
  reason,
  resource: { type: 'saved_payment_method', id: method._id },
  ...(method.officeId ? { officeId: method.officeId } : {}),
});

/**
 * `setup_intent.succeeded`: the payer saved a card for later (subscription) charges. Applies only to a SetupIntent we
 * created and recorded (models/setup-intent.model.ts), verified by the configuration that serves its office and made
 * it, in that key's mode; the payer reference and office come from our record, never from the event's metadata.
 * The card's brand, last four digits and expiry are read from Stripe with that configuration's key. Stored once per
 * SetupIntent: the record id derives from it, so a redelivery or replay finds the record it already made.
 */
export const applySetupIntentSucceeded: StripeEventHandler = async ({ row, object, auditKey, job, deps }) => {
  const intent = object as SetupIntentObject;
  const intentId = stripeIdOf(intent.id, SETUP_INTENT_ID);
  if (!intentId) return ignored('setup_intent_invalid');
  const record = await deps.models.SetupIntent.findById(intentId).lean();
  // Another company's SetupIntent is, for this company, one we never made.
  if (!record || record.companyId !== row.companyId) return ignored('setup_intent_unknown');
  const binding = await bindEventToRecord(deps, row, record, {
    kind: 'setup_intent',
    eventObjectId: intentId,
    recordedObjectId: record._id,
  });
  if (!binding.bound) return ignored(binding.reason);
  // The configuration's key may have changed mode since; the SetupIntent lives in the mode it was made in.
  if (row.livemode !== record.livemode) return ignored('livemode_mismatch');
  if (intent.status !== 'succeeded') return ignored('setup_intent_not_succeeded');
  const customer = stripeIdOf(intent.customer, STRIPE_CUSTOMER_ID);
  // Without a Customer, Stripe cannot charge the method again.
  if (!customer) return ignored('stripe_customer_missing');
  const paymentMethod = stripeIdOf(intent.payment_method, PAYMENT_METHOD_ID);
  if (!paymentMethod) return ignored('payment_method_missing');
  const usage: SavedPaymentMethodUsage =
    intent.usage === undefined || intent.usage === null
      ? 'off_session'
      : (SAVED_PAYMENT_METHOD_USAGES.find((u) => u === intent.usage) ?? 'off_session');

  const { SavedPaymentMethod } = deps.models;
  const id = savedPaymentMethodId(row.companyId, intentId);
  const existing = await SavedPaymentMethod.findById(id, WITHOUT_STRIPE_IDS).lean();
  if (existing) return finishExisting(existing, auditKey, job, deps);

  // The account that made the SetupIntent is the only one that knows its PaymentMethod.
  const access = await resolveGatewayAccess(
    deps.models,
    { companyId: record.companyId, officeId: record.officeId },
    {
      configurationId: record.configurationId,
      livemode: record.livemode,
      ...(record.accountId ? { accountId: record.accountId } : {}),
    },
  );
  if (!access.ok) return ignored(access.failure.code);
  let card: SavedCardDetails | undefined;
  try {
    card = await deps.gateway.retrievePaymentMethod(access.credentials, paymentMethod);
  } catch (error) {
    // Transient failures are retried by the job; a refusal (no such method, key refused) is recorded and replayable.
    if (error instanceof GatewayError && error.kind !== 'transient') return ignored('payment_method_unavailable');
    throw error;
  }
  if (!card || !isSavedCardDetails(card)) return ignored('payment_method_not_card');

  try {
    const saved = (
      await SavedPaymentMethod.create({
        _id: id,
        companyId: record.companyId,
        ...(record.officeId ? { officeId: record.officeId } : {}),
        customerRef: record.customerRef,
        stripeCustomerId: await deps.encryption.encrypt(row.companyId, customer),
        stripePaymentMethodId: await deps.encryption.encrypt(row.companyId, paymentMethod),
        setupIntentId: intentId,
        card: { brand: card.brand, last4: card.last4, expMonth: card.expMonth, expYear: card.expYear },
        usage,
        status: 'active',
        savedBy: auditKey,
      })
    ).toObject();
    await auditSaved(saved, auditKey, job, deps);
    await deps.onPaymentMethodSaved?.(saved);
    return onMethod('applied', 'payment_method_saved', saved);
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
  }
  const raced = await SavedPaymentMethod.findById(id, WITHOUT_STRIPE_IDS).lean();
  if (!raced) throw new Error(`saved payment method for stripe event ${row._id} vanished after a duplicate key`);
  return finishExisting(raced, auditKey, job, deps);
};

/** The method is stored: by this event's own earlier attempt (finish its audit), or by another event. */
async function finishExisting(
  existing: Omit<SavedPaymentMethodRecord, 'stripeCustomerId' | 'stripePaymentMethodId'>,
  auditKey: string,
  job: Job<StripeEventJob>,
  deps: StripeEventDeps,
): Promise<EventOutcome> {
  // This event's own earlier attempt stored it, then stopped before it was audited and marked.
  if (existing.savedBy === auditKey) {
    await auditSaved(existing, auditKey, job, deps);
    await deps.onPaymentMethodSaved?.(existing);
    return onMethod('applied', 'payment_method_saved', existing);
  }
  return onMethod('ignored', 'already_saved', existing);
}

async function auditSaved(
  method: Pick<SavedPaymentMethodRecord, '_id' | 'companyId' | 'officeId' | 'usage' | 'createdAt'>,
  auditKey: string,
  job: Job<StripeEventJob>,
  deps: StripeEventDeps,
): Promise<void> {
  await deps.enqueueAudit({
    eventId: transitionEventId('payment_method.saved', auditKey),
    companyId: method.companyId,
    ...(method.officeId ? { officeId: method.officeId } : {}),
    action: 'payment_method.saved',
    outcome: 'success',
    actor: STRIPE_EVENTS_ACTOR,
    resource: { type: 'saved_payment_method', id: method._id },
    reason: method.usage,
    ...(job.id ? { jobId: job.id } : {}),
    occurredAt: method.createdAt.toISOString(),
  });
}
