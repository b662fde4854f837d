import type { Job } from 'bullmq';
import { transitionEventId } from '../../domain/audit-actions';
import { OFFICE_ID } from '../../domain/payment-request';
import { isDuplicateKeyError } from '../../models/errors';
import {
  isCustomerRef,
  savedPaymentMethodId,
  SAVED_PAYMENT_METHOD_USAGES,
  type SavedPaymentMethodRecord,
  type SavedPaymentMethodUsage,
} from '../../models/saved-payment-method.model';
import type { WebhookEventRecord } from '../../models/webhook-event.model';
import type { StripeEventJob } from '../../queues/stripe-events.queue';
import { STRIPE_EVENTS_ACTOR, type EventOutcome, type StripeEventDeps, type StripeEventHandler } from './handler';

const SETUP_INTENT_ID = /^seti_[A-Za-z0-9]{1,255}$/;
const STRIPE_CUSTOMER_ID = /^cus_[A-Za-z0-9]{1,255}$/;
const PAYMENT_METHOD_ID = /^pm_[A-Za-z0-9_]{1,255}$/;
// Reading these would decrypt them; nothing here needs them once stored.
const WITHOUT_STRIPE_IDS = { stripeCustomerId: 0, stripePaymentMethodId: 0 } as const;

/** The parts of a SetupIntent (`data.object`) that are read here. */
interface SetupIntentObject {
  id?: unknown;
  status?: unknown;
  usage?: unknown;
  /** An id, or the expanded object. */
  customer?: unknown;
  payment_method?: unknown;
  metadata?: { customer_ref?: unknown; office_id?: unknown } | null;
}

/** Stripe sends a related object as its id, or expanded with an `id`. */
function stripeIdOf(value: unknown, pattern: RegExp): string | undefined {
  const id = value && typeof value === 'object' ? (value as { id?: unknown }).id : value;
  return typeof id === 'string' && pattern.test(id) ? id : undefined;
}

/**
 * The office a saved method belongs to: `metadata.office_id` when it has an
 * office id's shape, or the office whose own configuration verified the event.
 * Offices are ids here (Office documents exist only for configuration
 * overrides), so "valid for the company" means: well-formed, and the verifying
 * office's own when the event came through an office's endpoint.
 */
function officeFor(row: WebhookEventRecord, requested: unknown): { officeId?: string } | { reason: string } {
  if (requested === undefined || requested === null || requested === '') {
    return row.officeId ? { officeId: row.officeId } : {};
  }
  if (typeof requested !== 'string' || !OFFICE_ID.test(requested)) return { reason: 'office_invalid' };
  if (row.officeId && row.officeId !== requested) return { reason: 'office_mismatch' };
  return { officeId: requested };
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
 * `setup_intent.succeeded`: the payer saved a payment method for later
 * (subscription) charges. Stored once per SetupIntent: the record id derives
 * from it, so a redelivery or replay finds the record it already made.
 */
export const applySetupIntentSucceeded: StripeEventHandler = async ({ row, object, auditKey, job, deps }) => {
  const intent = object as SetupIntentObject;
  const intentId = stripeIdOf(intent.id, SETUP_INTENT_ID);
  if (!intentId) return ignored('setup_intent_invalid');
  if (intent.status !== 'succeeded') return ignored('setup_intent_not_succeeded');
  const customerRef = intent.metadata?.customer_ref;
  if (customerRef === undefined || customerRef === null || customerRef === '') return ignored('customer_ref_missing');
  if (!isCustomerRef(customerRef)) return ignored('customer_ref_invalid');
  const office = officeFor(row, intent.metadata?.office_id);
  if ('reason' in office) return ignored(office.reason);
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
  try {
    const saved = (
      await SavedPaymentMethod.create({
        _id: id,
        companyId: row.companyId,
        ...office,
        customerRef,
        stripeCustomerId: await deps.encryption.encrypt(row.companyId, customer),
        stripePaymentMethodId: await deps.encryption.encrypt(row.companyId, paymentMethod),
        usage,
        status: 'active',
        savedBy: auditKey,
      })
    ).toObject();
    await auditSaved(saved, auditKey, job, deps);
    return onMethod('applied', 'payment_method_saved', saved);
  } catch (error) {
    if (!isDuplicateKeyError(error)) throw error;
  }
  const existing = await SavedPaymentMethod.findById(id, WITHOUT_STRIPE_IDS).lean();
  if (!existing) throw new Error(`saved payment method for stripe event ${row._id} vanished after a duplicate key`);
  // This event's own earlier attempt stored it, then stopped before it was audited and marked.
  if (existing.savedBy === auditKey) {
    await auditSaved(existing, auditKey, job, deps);
    return onMethod('applied', 'payment_method_saved', existing);
  }
  return onMethod('ignored', 'already_saved', existing);
};

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
