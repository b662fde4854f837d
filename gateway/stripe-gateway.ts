import { createHash } from 'node:crypto';
import Stripe from 'stripe';
import {
  GatewayError,
  type ConfirmIntentInput,
  type CreateIntentInput,
  type CreateCustomerInput,
  type CreateRefundInput,
  type CreateSetupIntentInput,
  type GatewayCardDetails,
  type GatewayCredentials,
  type GatewaySetupIntent,
  type GatewayIntent,
  type GatewayIntentStatus,
  type GatewayRefund,
  type PaymentGateway,
} from '../domain/payment-gateway';
import { isGatewayRefundStatus } from '../domain/refund-status';
import type { StripeEndpoint } from '../platform/config';

export interface StripeGatewayOptions {
  /** stripe-mock or the dev simulator; unset means api.stripe.com over TLS. */
  endpoint?: StripeEndpoint;
  timeoutMs: number;
}

const MAX_CACHED_CLIENTS = 500;

/**
 * The Stripe API version every request is made with, pinned rather than left to
 * the SDK's default: upgrading the SDK then cannot change the API our requests
 * and webhooks speak without this line changing too (the SDK's types accept only
 * its own version, so a new SDK fails to compile here until the pin is reviewed).
 */
export const STRIPE_API_VERSION = '2026-10-28.endive' satisfies Stripe.LatestApiVersion;

/** Turns the SDK's errors into the retry decision the worker acts on. */
export function classifyStripeError(error: unknown): GatewayError {
  if (!(error instanceof Stripe.errors.StripeError)) {
    return new GatewayError('transient', 'gateway_unreachable', error instanceof Error ? error.message : String(error));
  }
  const code = error.code ?? 'gateway_error';
  // Before stripe-node 23 the SDK's class followed Stripe's error type; now it follows
  // the HTTP status, and every 409 (a key or an object another request holds) arrives
  // as a StripeAPIError. Stripe's error type keeps these decisions what they were.
  if (error.rawType === 'idempotency_error') {
    // 409: an earlier attempt with this key is still running at Stripe (we timed out first); ask again later.
    if (error.statusCode === 409) return new GatewayError('transient', 'idempotent_request_in_progress', error.message);
    return new GatewayError('permanent', 'idempotency_conflict', error.message);
  }
  const type =
    error.type === 'StripeAPIError' && error.rawType === 'invalid_request_error'
      ? 'StripeInvalidRequestError'
      : error.type;
  switch (type) {
    case 'StripeCardError':
      return new GatewayError('declined', error.code ?? 'card_declined', error.message, error.decline_code);
    case 'StripeInvalidRequestError':
      if (error.code === 'payment_intent_unexpected_state') {
        return new GatewayError('unexpected_state', error.code, error.message);
      }
      return new GatewayError('permanent', error.code ?? 'invalid_request', error.message);
    case 'StripeAuthenticationError':
    case 'StripePermissionError':
      return new GatewayError('permanent', 'payment_config_invalid', 'the gateway refused the configured credentials');
    case 'StripeRateLimitError':
      return new GatewayError('transient', 'rate_limited', error.message);
    case 'StripeConnectionError':
      return new GatewayError('transient', 'gateway_unreachable', error.message);
    default:
      // 5xx (StripeAPIError) and anything unknown: retrying is safe, idempotency keys guard it.
      return new GatewayError('transient', code, error.message);
  }
}

function toGatewayIntent(intent: Stripe.PaymentIntent): GatewayIntent {
  const lastError = intent.last_payment_error;
  return {
    id: intent.id,
    status: intent.status as GatewayIntentStatus,
    // The client secret lets the payer's browser finish 3-D Secure; only needed then.
    clientSecret: intent.status === 'requires_action' ? (intent.client_secret ?? undefined) : undefined,
    nextActionType: intent.next_action?.type,
    lastError: lastError
      ? {
          code: lastError.code ?? 'payment_failed',
          declineCode: lastError.decline_code ?? undefined,
          message: lastError.message ?? 'the payment failed',
        }
      : undefined,
  };
}

function toGatewayRefund(refund: Stripe.Refund): GatewayRefund {
  return {
    id: refund.id,
    // A status Stripe adds later (or none) is treated as still pending: only a known final status settles a refund.
    status: isGatewayRefundStatus(refund.status) ? refund.status : 'pending',
    amount: refund.amount,
    ...(refund.failure_reason ? { failureReason: refund.failure_reason } : {}),
  };
}

export class StripeGateway implements PaymentGateway {
  private readonly clients = new Map<string, Stripe>();

  constructor(private readonly options: StripeGatewayOptions) {}

  /** One SDK client per secret key (companies and offices have their own accounts). */
  private client(credentials: GatewayCredentials): Stripe {
    const cacheKey = createHash('sha256').update(credentials.secretKey).digest('hex');
    let client = this.clients.get(cacheKey);
    if (!client) {
      if (this.clients.size >= MAX_CACHED_CLIENTS) {
        const oldest = this.clients.keys().next().value;
        if (oldest !== undefined) this.clients.delete(oldest);
      }
      client = new Stripe(credentials.secretKey, {
        apiVersion: STRIPE_API_VERSION,
        // BullMQ owns retries (with backoff and a record of attempts); the SDK does not retry on its own.
        maxNetworkRetries: 0,
        timeout: this.options.timeoutMs,
        telemetry: false,
        appInfo: { name: 'hipaa-billing' },
        ...(this.options.endpoint ?? {}),
      });
      this.clients.set(cacheKey, client);
    }
    return client;
  }

  private async call<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      throw classifyStripeError(error);
    }
  }

  async createPaymentIntent(credentials: GatewayCredentials, input: CreateIntentInput): Promise<GatewayIntent> {
    const intent = await this.call(() =>
      this.client(credentials).paymentIntents.create(
        {
          amount: input.amount,
          currency: input.currency,
          customer: input.customer,
          payment_method: input.paymentMethod,
          // Cards only (API 2026-09-30.endive renamed `payment_method_types` to this).
          allowed_payment_method_types: ['card'],
          metadata: input.metadata,
          // Card payments take only the suffix (Stripe refuses `statement_descriptor` for them); Stripe appends it to
          // the account's prefix.
          ...(input.statementDescriptor ? { statement_descriptor_suffix: input.statementDescriptor } : {}),
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return toGatewayIntent(intent);
  }

  async confirmPaymentIntent(credentials: GatewayCredentials, input: ConfirmIntentInput): Promise<GatewayIntent> {
    const intent = await this.call(() =>
      this.client(credentials).paymentIntents.confirm(
        input.intentId,
        { payment_method: input.paymentMethod, ...(input.offSession ? { off_session: true } : {}) },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return toGatewayIntent(intent);
  }

  async retrieveAccountId(credentials: GatewayCredentials): Promise<string> {
    const account = await this.call(() => this.client(credentials).accounts.retrieveCurrent());
    return account.id;
  }

  async retrievePaymentIntent(credentials: GatewayCredentials, intentId: string): Promise<GatewayIntent> {
    const intent = await this.call(() => this.client(credentials).paymentIntents.retrieve(intentId));
    return toGatewayIntent(intent);
  }

  async createRefund(credentials: GatewayCredentials, input: CreateRefundInput): Promise<GatewayRefund> {
    const refund = await this.call(() =>
      this.client(credentials).refunds.create(
        {
          payment_intent: input.paymentIntentId,
          amount: input.amount,
          reason: input.reason,
          metadata: input.metadata,
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return toGatewayRefund(refund);
  }

  async findRefund(
    credentials: GatewayCredentials,
    input: { paymentIntentId: string; refundId: string },
  ): Promise<GatewayRefund | undefined> {
    const page = await this.call(() =>
      this.client(credentials).refunds.list({ payment_intent: input.paymentIntentId, limit: 100 }),
    );
    const found = page.data.find((refund) => refund.metadata?.refund_id === input.refundId);
    return found ? toGatewayRefund(found) : undefined;
  }

  async createCustomer(credentials: GatewayCredentials, input: CreateCustomerInput): Promise<{ id: string }> {
    // Deliberately no name, email, phone, address or description: only our opaque reference.
    const customer = await this.call(() =>
      this.client(credentials).customers.create(
        { metadata: { customer_ref: input.customerRef } },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    return { id: customer.id };
  }

  async createSetupIntent(credentials: GatewayCredentials, input: CreateSetupIntentInput): Promise<GatewaySetupIntent> {
    const intent = await this.call(() =>
      this.client(credentials).setupIntents.create(
        {
          customer: input.customer,
          // Saved for renewals charged while the payer is not there.
          usage: 'off_session',
          allowed_payment_method_types: ['card'],
          metadata: input.metadata,
        },
        { idempotencyKey: input.idempotencyKey },
      ),
    );
    if (!intent.client_secret) {
      throw new GatewayError(
        'permanent',
        'client_secret_missing',
        'the gateway answered a SetupIntent without a client secret',
      );
    }
    return { id: intent.id, clientSecret: intent.client_secret, status: intent.status };
  }

  async retrievePaymentMethod(
    credentials: GatewayCredentials,
    paymentMethodId: string,
  ): Promise<GatewayCardDetails | undefined> {
    const method = await this.call(() => this.client(credentials).paymentMethods.retrieve(paymentMethodId));
    const card = method.card;
    if (!card) return undefined;
    // Picked field by field: nothing else of the card (fingerprint, checks, wallet, billing details) is kept.
    return { brand: card.brand, last4: card.last4, expMonth: card.exp_month, expYear: card.exp_year };
  }
}
