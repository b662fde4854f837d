import { ACCOUNT_CHANGED, isSameGatewayAccount, type GatewayAccountRef } from '../domain/gateway-account';
import { resolvePaymentConfig } from '../domain/payment-config';
import { configurationId, isLiveModeKey } from '../domain/webhook-binding';
import type { GatewayChargeSettings, GatewayCredentials } from '../domain/payment-gateway';
import type { Models } from '../models';
import { isShreddedDataError } from '../models/encryption';
import { loadPaymentLevels, ShreddedPaymentInfoError, type PaymentTarget } from '../models/payment-config';
import type { SettingsReads } from '../models/settings-cache';

export type GatewayAccess =
  | { ok: true; credentials: GatewayCredentials; charge: GatewayChargeSettings; account: GatewayAccountRef }
  | { ok: false; failure: { code: string; message: string } };

/**
 * The gateway credentials for a company (or one of its offices), from the
 * effective payment configuration, or why none may be used. Every charge,
 * refund and renewal asks here first: a configuration without a BAA or
 * section 1179 attestation fails with `gateway_not_attested` before any
 * gateway call, and so does a crypto-shredded one (`data_shredded`). Given the account that served a payment
 * (`servedBy`), it answers only with that account (`gateway_account_changed` otherwise).
 */
export async function resolveGatewayAccess(
  models: Pick<Models, 'Company' | 'Office'>,
  target: PaymentTarget,
  servedBy?: GatewayAccountRef,
  /** A worker's settings cache: the company and office read through it (validated against Redis' tokens). */
  reads?: SettingsReads,
): Promise<GatewayAccess> {
  let levels: Awaited<ReturnType<typeof loadPaymentLevels>>;
  try {
    levels = await loadPaymentLevels(models, target, { officeOnlyWhenUsed: true, ...(reads ? { reads } : {}) });
  } catch (error) {
    if (!isShreddedDataError(error) && !(error instanceof ShreddedPaymentInfoError)) throw error;
    return {
      ok: false,
      failure: { code: 'data_shredded', message: "the company's payment configuration was crypto-shredded" },
    };
  }
  const resolved = resolvePaymentConfig(levels.company, levels.office);
  if (!resolved.ok) return { ok: false, failure: { code: resolved.code, message: resolved.message } };
  if (!resolved.settings.compliance) {
    const message = 'the payment gateway has no BAA or section 1179 attestation; nothing is sent to it';
    return { ok: false, failure: { code: 'gateway_not_attested', message } };
  }
  const { statementDescriptor, accountId } = resolved.settings;
  const secretKey = resolved.settings.secretKey!;
  const account: GatewayAccountRef = {
    configurationId: configurationId(target.companyId, target.officeId, resolved.sources.secretKey ?? 'company'),
    ...(accountId ? { accountId } : {}),
    livemode: isLiveModeKey(secretKey),
  };
  if (servedBy && !isSameGatewayAccount(servedBy, account)) return { ok: false, failure: { ...ACCOUNT_CHANGED } };
  return {
    ok: true,
    credentials: { secretKey },
    charge: statementDescriptor ? { statementDescriptor } : {},
    account,
  };
}
