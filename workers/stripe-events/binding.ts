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

type ResolvedConfig = ReturnType<typeof resolvePaymentConfig>;

/** The effective configuration for `target` now (the office's read only where the company's mode uses it). */
async function resolveTarget(deps: StripeEventDeps, target: PaymentTarget): Promise<ResolvedConfig | undefined> {
  const levels = await loadPaymentLevels(deps.models, target, { officeOnlyWhenUsed: true }).catch((error: unknown) => {
    if (isShreddedDataError(error)) return undefined;
    throw error;
  });
  return levels?.company ? resolvePaymentConfig(levels.company, levels.office) : undefined;
}

/** The configuration whose `by` serves `target`, named as its endpoint is, with its secret key; undefined if none. */
function servingConfiguration(
  resolved: ResolvedConfig | undefined,
  target: PaymentTarget,
  by: 'secretKey' | 'webhookSigningSecrets',
): { id: string; secretKey: string } | undefined {
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
  const recordTarget = { companyId: record.companyId, officeId: record.officeId };
  const rowTarget = { companyId: row.companyId, officeId: row.officeId };
  // Usually one configuration serves both (the record's office verified its own event): read it once.
  const sameTarget = recordTarget.companyId === rowTarget.companyId && recordTarget.officeId === rowTarget.officeId;
  const [forRecord, forRow] = await Promise.all([
    resolveTarget(deps, recordTarget),
    sameTarget ? undefined : resolveTarget(deps, rowTarget),
  ]);
  const served = servingConfiguration(forRecord, recordTarget, 'secretKey');
  const verified = servingConfiguration(sameTarget ? forRecord : forRow, rowTarget, 'webhookSigningSecrets');
  return decideEventBinding({
    ...object,
    verifiedBy: verified?.id,
    servedBy: served?.id,
    eventLivemode: row.livemode,
    secretKey: served?.secretKey,
  });
}
