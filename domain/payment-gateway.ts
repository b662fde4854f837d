import type { GatewayRefundStatus, RefundReason } from './refund-status';

/**
 * The narrow interface the charge worker needs from a payment processor.
 * Stripe implements it today; another processor can be added behind it.
 * Only amounts, currency and opaque ids cross it: never PHI.
 */
export type GatewayIntentStatus =
  | 'requires_payment_method'
  | 'requires_confirmation'
  | 'requires_action'
  | 'processing'
  | 'requires_capture'
  | 'canceled'
  | 'succeeded';

export interface GatewayIntent {
  id: string;
  status: GatewayIntentStatus;
  clientSecret?: string;
  nextActionType?: string;
  lastError?: { code: string; declineCode?: string; message: string };
}

export interface GatewayCredentials {
  secretKey: string;
}

/** What the effective payment configuration gives a charge: the credentials, and what the payer's statement shows. */
export interface GatewayChargeSettings {
  statementDescriptor?: string;
}

export interface CreateIntentInput {
  amount: number;
  currency: string;
  customer: string;
  paymentMethod: string;
  /**
   * Opaque ids only: our payment and company ids. Never the office id: offices are named by the practice (an office
   * called `behavioral-health` would tell the gateway the kind of care); our payment record knows the office.
   */
  metadata: { payment_id: string; company_id: string };
  /** The practice's neutral text for the payer's card statement (Stripe: `statement_descriptor_suffix`). */
  statementDescriptor?: string;
  idempotencyKey: string;
}

export interface ConfirmIntentInput {
  intentId: string;
  paymentMethod: string;
  /** The payer is not there (a renewal): the card's issuer may still ask for authentication, which then waits. */
  offSession?: boolean;
  idempotencyKey: string;
}

export interface GatewayRefund {
  id: string;
  status: GatewayRefundStatus;
  amount: number;
  /** Why a failed refund failed, as the gateway says (e.g. expired_or_canceled_card). */
  failureReason?: string;
}

export interface CreateRefundInput {
  paymentIntentId: string;
  amount: number;
  reason: RefundReason;
  /** Opaque ids only (our refund and payment ids). */
  metadata: { refund_id: string; payment_id: string };
  idempotencyKey: string;
}

export interface CreateCustomerInput {
  /**
   * Our opaque payer reference, the Customer's only metadata. No name, email, phone or description: the Customer
   * exists so Stripe can charge a saved method again, and needs nothing that identifies a patient.
   */
  customerRef: string;
  idempotencyKey: string;
}

export interface CreateSetupIntentInput {
  /** The Stripe Customer (cus_…) the saved method is attached to. */
  customer: string;
  /** Opaque ids only: our payer reference and company id. Never the office id (see CreateIntentInput). */
  metadata: { customer_ref: string; company_id: string };
  idempotencyKey: string;
}

/** A SetupIntent made for the payer's browser to confirm: its client secret goes to the payer's browser only. */
export interface GatewaySetupIntent {
  id: string;
  clientSecret: string;
  status: string;
}

/** What may be shown of a saved card: never its number, only brand, last four digits and expiry. */
export interface GatewayCardDetails {
  brand: string;
  last4: string;
  expMonth: number;
  expYear: number;
}

export interface PaymentGateway {
  createPaymentIntent(credentials: GatewayCredentials, input: CreateIntentInput): Promise<GatewayIntent>;
  confirmPaymentIntent(credentials: GatewayCredentials, input: ConfirmIntentInput): Promise<GatewayIntent>;
  retrievePaymentIntent(credentials: GatewayCredentials, intentId: string): Promise<GatewayIntent>;
  createRefund(credentials: GatewayCredentials, input: CreateRefundInput): Promise<GatewayRefund>;
  /** The refund an earlier attempt made for our refund id (by its metadata), if the gateway has one. */
  findRefund(
    credentials: GatewayCredentials,
    input: { paymentIntentId: string; refundId: string },
  ): Promise<GatewayRefund | undefined>;
  /** A Customer carrying only our payer reference. */
  createCustomer(credentials: GatewayCredentials, input: CreateCustomerInput): Promise<{ id: string }>;
  /** A card-only SetupIntent for later off-session charges. */
  createSetupIntent(credentials: GatewayCredentials, input: CreateSetupIntentInput): Promise<GatewaySetupIntent>;
  /** The id of the Stripe account a secret key belongs to (`GET /v1/account`): what an attestation covers. */
  retrieveAccountId(credentials: GatewayCredentials): Promise<string>;
  /** The masked card details of a saved PaymentMethod; undefined when it is not a card. */
  retrievePaymentMethod(
    credentials: GatewayCredentials,
    paymentMethodId: string,
  ): Promise<GatewayCardDetails | undefined>;
}

/**
 * How a gateway failure is handled:
 * - declined: the payer's card said no; final, recorded, never retried.
 * - permanent: our request or configuration is wrong; final, recorded.
 * - unexpected_state: the intent already moved on (e.g. confirmed by an earlier attempt); re-read it.
 * - transient: network, 5xx, 429, timeouts; retried with backoff.
 */
export type GatewayErrorKind = 'declined' | 'permanent' | 'unexpected_state' | 'transient';

export class GatewayError extends Error {
  constructor(
    public readonly kind: GatewayErrorKind,
    public readonly code: string,
    message: string,
    public readonly declineCode?: string,
  ) {
    super(message);
    this.name = 'GatewayError';
  }
}
