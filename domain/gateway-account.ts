import { accountIdsAgree } from './payment-account';

/**
 * Which gateway account served a payment, and what to do when a retry cannot reach it. Pure.
 *
 * A payment records the account its first gateway call used; its retries, refunds and reconciliation use that
 * account or none. A configuration can move to another Stripe account (a new secret key, another office's
 * account), and a PaymentIntent or a refund made in one account does not exist in another: sending the retry
 * elsewhere would charge twice or refund nothing.
 */
export interface GatewayAccountRef {
  /** The configuration whose key served it, named as its webhook endpoint is (`configurationId`). */
  configurationId: string;
  /** The Stripe account id, where the configuration names one. */
  accountId?: string;
  livemode: boolean;
}

/**
 * Whether `current` is the account `recorded` names. A key rolled in the same account keeps the configuration, the
 * account id and the mode, and passes; a configuration whose key moved to another account fails where the account
 * ids differ, and so does any change of configuration or mode.
 */
export function isSameGatewayAccount(recorded: GatewayAccountRef, current: GatewayAccountRef): boolean {
  if (recorded.configurationId !== current.configurationId || recorded.livemode !== current.livemode) return false;
  return accountIdsAgree(recorded.accountId, current.accountId);
}

/**
 * Why a payment or refund waits on a person, or on the gateway's own answer: an earlier attempt may have reached
 * the gateway, and a retry could not (its configuration changed, lost its attestation, or the gateway refused the
 * key). Never final: only the gateway's answer settles the record. `since` also keys its audit event.
 */
export interface Attention {
  code: string;
  message: string;
  since: Date;
}

/** The reason code a retry gets when the configuration now points at another gateway account. */
export const ACCOUNT_CHANGED = {
  code: 'gateway_account_changed',
  message: 'the payment configuration now points at another gateway account than the one that served this payment',
} as const;
