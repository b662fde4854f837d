import { createHash } from 'node:crypto';
import { ulid } from '../../platform/ids';
import { transitionEventId } from '../../domain/audit-actions';
import type { AuditEventInput } from '../../domain/audit-event';
import { GatewayError, type GatewayCredentials, type PaymentGateway } from '../../domain/payment-gateway';
import type { GatewayAccountRef } from '../../domain/gateway-account';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import { isDuplicateKeyError } from '../../models/errors';
import type { SetupIntentRecord } from '../../models/setup-intent.model';
import { stripeCustomerIdempotencyKey, stripeCustomerRecordId } from '../../models/stripe-customer.model';
import { resolveGatewayAccess } from '../gateway-access';

export interface CreateSetupIntentDeps {
  models: Pick<Models, 'Company' | 'Office' | 'StripeCustomer' | 'SetupIntent'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  gateway: Pick<PaymentGateway, 'createCustomer' | 'createSetupIntent'>;
  /** Queues the `payment_method.setup_started` event; false when it could not be queued (nothing then goes out). */
  enqueueAudit: (event: AuditEventInput) => Promise<boolean>;
}

export interface SetupIntentInput {
  companyId: string;
  officeId?: string;
  /** Our opaque payer reference (already validated: models/saved-payment-method.model.ts isCustomerRef). */
  customerRef: string;
  /** The caller's Idempotency-Key, if it sent one: a retry with it gets the same SetupIntent back from Stripe. */
  idempotencyKey?: string;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
}

/**
 * - `created`: the SetupIntent exists at Stripe, is recorded and audited; its client secret is for the payer's browser.
 * - `company_not_found`, `company_shredded`: nothing is sent.
 * - `gateway_refused`: the configuration may not be used (`gateway_not_attested`, `payment_config_missing`,
 *   `data_shredded`, …); nothing is sent.
 * - `gateway_failed`: Stripe failed or refused the request (the error says whether a retry may help; Stripe's
 *   `idempotency_conflict` means the Idempotency-Key was used for another payer).
 * - `key_conflict`: the Idempotency-Key was used for this payer at another office.
 * - `audit_unavailable`: made and recorded, but its audit event could not be queued, so the client secret is withheld
 *   (the SetupIntent is left unused; a retry makes another).
 */
export type SetupIntentResult =
  | { outcome: 'created'; setupIntentId: string; clientSecret: string; customerRef: string }
  | { outcome: 'company_not_found' | 'company_shredded' | 'audit_unavailable' | 'key_conflict' }
  | { outcome: 'gateway_refused'; code: string; message: string }
  | { outcome: 'gateway_failed'; error: GatewayError };

// A racing request holds the Customer's idempotency key at Stripe: its answer is the same Customer, so wait for it.
const CUSTOMER_RACE_WAITS_MS = [100, 250, 500, 1_000];

/**
 * Starts saving a payer's card: makes (once per payer and gateway account) a Stripe Customer that carries only our
 * opaque reference, then a card-only, off-session SetupIntent on it, records the SetupIntent (so its
 * `setup_intent.succeeded` event can be bound to it) and audits `payment_method.setup_started`. The one use case
 * that calls the gateway on the request path: the payer's browser needs the SetupIntent's client secret now.
 * The office stays out of Stripe (metadata: our payer reference and company id only); our record keeps it.
 */
export async function createSetupIntent(
  deps: CreateSetupIntentDeps,
  input: SetupIntentInput,
): Promise<SetupIntentResult> {
  const company = await deps.models.Company.findById(input.companyId, { shreddedAt: 1 }).lean();
  if (!company) return { outcome: 'company_not_found' };
  if (company.shreddedAt) return { outcome: 'company_shredded' };

  const access = await resolveGatewayAccess(deps.models, { companyId: input.companyId, officeId: input.officeId });
  if (!access.ok) return { outcome: 'gateway_refused', ...access.failure };

  let intent: { id: string; clientSecret: string };
  try {
    const customer = await stripeCustomerFor(deps, access, input);
    intent = await deps.gateway.createSetupIntent(access.credentials, {
      customer,
      metadata: { customer_ref: input.customerRef, company_id: input.companyId },
      idempotencyKey: setupIntentIdempotencyKey(input, access.account),
    });
  } catch (error) {
    if (error instanceof GatewayError) return { outcome: 'gateway_failed', error };
    throw error;
  }

  const record: SetupIntentRecord = {
    _id: intent.id,
    companyId: input.companyId,
    ...(input.officeId ? { officeId: input.officeId } : {}),
    customerRef: input.customerRef,
    configurationId: access.account.configurationId,
    ...(access.account.accountId ? { accountId: access.account.accountId } : {}),
    livemode: access.account.livemode,
    createdAt: new Date(),
  };
  try {
    await deps.models.SetupIntent.insertMany([record], { lean: true });
  } catch (error) {
    // A retry with the same Idempotency-Key: Stripe answered the SetupIntent the first request recorded.
    if (!isDuplicateKeyError(error)) throw error;
    const existing = await deps.models.SetupIntent.findById(intent.id).lean();
    if (!existing) throw error;
    const same =
      existing.companyId === input.companyId &&
      existing.customerRef === input.customerRef &&
      existing.officeId === input.officeId;
    if (!same) return { outcome: 'key_conflict' };
  }

  const audited = await deps.enqueueAudit({
    eventId: transitionEventId('payment_method.setup_started', intent.id),
    companyId: input.companyId,
    ...(input.officeId ? { officeId: input.officeId } : {}),
    action: 'payment_method.setup_started',
    outcome: 'success',
    actor: input.requestedBy,
    resource: { type: 'setup_intent', id: intent.id },
    requestId: input.requestId,
    occurredAt: record.createdAt.toISOString(),
  });
  if (!audited) return { outcome: 'audit_unavailable' };
  return {
    outcome: 'created',
    setupIntentId: intent.id,
    clientSecret: intent.clientSecret,
    customerRef: input.customerRef,
  };
}

/** The Customer for this payer in this gateway account: the recorded one, or one made now and recorded. */
async function stripeCustomerFor(
  deps: CreateSetupIntentDeps,
  access: { credentials: GatewayCredentials; account: GatewayAccountRef },
  input: SetupIntentInput,
): Promise<string> {
  const { StripeCustomer } = deps.models;
  const recordId = stripeCustomerRecordId(input.companyId, access.account, input.customerRef);
  for (let attempt = 0; ; attempt += 1) {
    const existing = await StripeCustomer.findById(recordId, { stripeCustomerId: 1 }).lean();
    if (existing) return String(existing.stripeCustomerId);
    let created: { id: string };
    try {
      created = await deps.gateway.createCustomer(access.credentials, {
        customerRef: input.customerRef,
        idempotencyKey: stripeCustomerIdempotencyKey(recordId),
      });
    } catch (error) {
      const wait = CUSTOMER_RACE_WAITS_MS[attempt];
      if (!(error instanceof GatewayError && error.code === 'idempotent_request_in_progress' && wait)) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
      continue;
    }
    try {
      await StripeCustomer.create({
        _id: recordId,
        companyId: input.companyId,
        configurationId: access.account.configurationId,
        ...(access.account.accountId ? { accountId: access.account.accountId } : {}),
        livemode: access.account.livemode,
        customerRef: input.customerRef,
        stripeCustomerId: await deps.encryption.encrypt(input.companyId, created.id),
        // Findable by equality (application/invoices: a one-off payment's `cus_…` leads back to the payer reference).
        stripeCustomerKey: await deps.encryption.encrypt(input.companyId, created.id, 'deterministic'),
      });
    } catch (error) {
      // A racing request recorded it first: the same Customer (same idempotency key), so either id serves.
      if (!isDuplicateKeyError(error)) throw error;
    }
    return created.id;
  }
}

/**
 * With the caller's Idempotency-Key, a retry is the same Stripe request (Stripe answers the same SetupIntent, or an
 * idempotency error when the key was used for another payer); without one, every request makes its own.
 */
function setupIntentIdempotencyKey(input: SetupIntentInput, account: GatewayAccountRef): string {
  if (!input.idempotencyKey) return `setup-intent-${ulid()}`;
  const digest = createHash('sha256')
    .update(JSON.stringify([input.companyId, account.configurationId, input.idempotencyKey]))
    .digest('hex');
  return `setup-intent-${digest.slice(0, 40)}`;
}
