import { resolvePaymentConfig } from '../../domain/payment-config';
import {
  configurationId,
  decideEventBinding,
  type BoundObjectKind,
  type EventBinding,
} from '../../domain/webhook-binding';
import { isShreddedDataError } from '../../models/encryption';
import { loadPaymentLevels, type PaymentTarget } from '../../models/payment-config';
import type { WebhookEventRecord } from '../../models/webhook-event.model';
import type { StripeEventDeps } from './handler';

/** The configuration serving `target` now, named as its endpoint is, with its secret key; undefined if none. */
async function servingConfiguration(
  deps: StripeEventDeps,
  target: PaymentTarget,
  by: 'secretKey' | 'webhookSigningSecrets',
): Promise<{ id: string; secretKey: string } | undefined> {
  const levels = await loadPaymentLevels(deps.models, target).catch((error: unknown) => {
    if (isShreddedDataError(error)) return undefined;
    throw error;
  });
  const resolved = levels?.company ? resolvePaymentConfig(levels.company, levels.office) : undefined;
  if (!resolved?.ok || !resolved.settings.secretKey) return undefined;
  const level = resolved.sources[by] ?? 'company';
  return { id: configurationId(target.companyId, target.officeId, level), secretKey: resolved.settings.secretKey };
}

/**
 * Whether the event on `row` may touch our record (a payment or a refund, of the row's company): it must name the
 * Stripe object whose id we recorded, come from the configuration that serves the record (the one whose signing
 * secrets verified it is compared with the one whose key serves the record) and match that key's mode.
 */
export async function bindEventToRecord(
  deps: StripeEventDeps,
  row: Pick<WebhookEventRecord, 'companyId' | 'officeId' | 'livemode'>,
  record: { companyId: string; officeId?: string },
  object: { kind: BoundObjectKind; eventObjectId: string | undefined; recordedObjectId: string | undefined },
): Promise<EventBinding> {
  if (!object.recordedObjectId || object.eventObjectId !== object.recordedObjectId) {
    return decideEventBinding({
      ...object,
      verifiedBy: undefined,
      servedBy: undefined,
      eventLivemode: row.livemode,
      secretKey: undefined,
    });
  }
  const [served, verified] = await Promise.all([
    servingConfiguration(deps, { companyId: record.companyId, officeId: record.officeId }, 'secretKey'),
    servingConfiguration(deps, { companyId: row.companyId, officeId: row.officeId }, 'webhookSigningSecrets'),
  ]);
  return decideEventBinding({
    ...object,
    verifiedBy: verified?.id,
    servedBy: served?.id,
    eventLivemode: row.livemode,
    secretKey: served?.secretKey,
  });
}
