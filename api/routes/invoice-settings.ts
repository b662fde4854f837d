import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  companyInvoiceSettingsSchema,
  effectiveInvoiceSettings,
  mergeUpdate,
  officeInvoiceSettingsSchema,
  payerProfileSchema,
} from '../../domain/invoice-settings';
import type { Letterhead } from '../../domain/invoice';
import type { Models } from '../../models';
import type { FieldEncryption } from '../../models/encryption';
import { invoiceSettingsId, type InvoiceSettingsRecord } from '../../models/invoice-settings.model';
import { payerProfileId } from '../../models/payer-profile.model';
import { CUSTOMER_REF_PATTERN } from '../../models/saved-payment-method.model';
import type { AccessGuard } from '../access-guard';
import { writeAudited } from '../audited-change';
import { ApiError } from '../errors';
import { rejectIfShredded } from '../payment-access';
import { parse, scopeIdSchema } from '../validation';

export interface InvoiceSettingsRouteDeps {
  models: Pick<Models, 'Company' | 'InvoiceSettings' | 'PayerProfile'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  guard: AccessGuard;
}

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();
export const officeParams = z.object({ companyId: scopeIdSchema, officeId: scopeIdSchema }).strict();
export const payerParams = z
  .object({ companyId: scopeIdSchema, customerRef: z.string().regex(CUSTOMER_REF_PATTERN) })
  .strict();

const actorOf = (request: FastifyRequest) => ({
  type: request.principal!.subjectType,
  id: request.principal!.subject,
});

/** The record a merge would leave (to audit what it changes before it is written). */
function mergedRecord(
  before: InvoiceSettingsRecord | null,
  $set: Record<string, unknown>,
  $unset: Record<string, 1>,
): InvoiceSettingsRecord {
  const merged = { ...(before ?? {}), ...$set } as Record<string, unknown>;
  for (const field of Object.keys($unset)) delete merged[field];
  return merged as unknown as InvoiceSettingsRecord;
}

/** A letterhead in an audit event: whether it changed, not the text (it is the practice's, but free text). */
const letterheadMark = (letterhead?: Letterhead) => (letterhead ? `[set ${letterhead.address.length} lines]` : null);

const PLAIN_FIELDS = ['numberPrefix', 'phiLevel', 'letterheadStyle', 'requireDownloadReason', 'timeZone'] as const;
const LETTERHEAD_FIELDS = ['letterhead', 'neutralLetterhead'] as const;

/** What changed between two stored versions (each field that differs; letterheads by mark, never their text). */
function settingsChanges(before: InvoiceSettingsRecord | null, after: InvoiceSettingsRecord | null) {
  const value = (record: InvoiceSettingsRecord | null, field: (typeof PLAIN_FIELDS)[number]) =>
    record?.[field] === undefined ? null : String(record[field]);
  return [
    ...PLAIN_FIELDS.map((field) => ({ field, before: value(before, field), after: value(after, field) })),
    ...LETTERHEAD_FIELDS.map((field) => ({
      field,
      before: letterheadMark(before?.[field]),
      after: letterheadMark(after?.[field]),
      changed: JSON.stringify(before?.[field] ?? null) !== JSON.stringify(after?.[field] ?? null),
    })),
  ]
    .filter((change) => ('changed' in change ? change.changed : change.before !== change.after))
    .map(({ field, before: was, after: is }) => ({ field, before: was, after: is }));
}

/** A stored settings record as the settings it holds (no nulls). */
function storedSettings(record: InvoiceSettingsRecord | null) {
  if (!record) return undefined;
  const { numberPrefix, phiLevel, letterhead, letterheadStyle, neutralLetterhead, requireDownloadReason, timeZone } =
    record;
  return { numberPrefix, phiLevel, letterhead, letterheadStyle, neutralLetterhead, requireDownloadReason, timeZone };
}

/**
 * Invoice settings (number prefix, PHI level, letterhead, whether downloads need a stated reason) and an office's
 * overrides need `payment_config:write` (company admins): what a company's documents disclose about its payers, and
 * who must say why they download one, are compliance settings like its payment configuration, not day-to-day billing.
 * Payer profiles need `payments:create`: whoever may charge a payer may record where that payer's bills go.
 */
export function registerInvoiceSettingsRoutes(app: FastifyInstance, deps: InvoiceSettingsRouteDeps): void {
  const { Company, InvoiceSettings, PayerProfile } = deps.models;
  const { guard } = deps;

  app.put('/v1/companies/:companyId/invoice-settings', { bodyLimit: 8 * 1024 }, async (request) => {
    const { companyId } = parse(companyParams, request.params);
    const body = parse(companyInvoiceSettingsSchema, request.body);
    await guard.authorize(request, 'payment_config:write', { companyId });
    if (!(await rejectIfShredded(deps.models, companyId))) {
      throw new ApiError(404, 'company_not_found', 'no such company');
    }
    const id = invoiceSettingsId(companyId);
    const before = await InvoiceSettings.findById(id).lean();
    const { $set, $unset } = mergeUpdate(body);
    const after = await writeAudited(request, guard, {
      holder: InvoiceSettings,
      id,
      // The event says what the merged result changed (its own fields are fixed before the write).
      event: {
        companyId,
        action: 'invoice_settings.updated',
        resource: { type: 'invoice_settings', id: companyId },
        permission: 'payment_config:write',
        changes: settingsChanges(before, mergedRecord(before, $set, $unset)),
      },
      write: (pendingAudit) =>
        InvoiceSettings.findOneAndUpdate(
          { _id: id },
          {
            $set: { companyId, ...$set, ...pendingAudit, updatedBy: actorOf(request) },
            ...(Object.keys($unset).length > 0 ? { $unset } : {}),
          },
          { upsert: true, new: true },
        ).lean(),
    });
    const company = await Company.findById(companyId, { name: 1 }).lean();
    return effectiveInvoiceSettings(company?.name ?? companyId, storedSettings(after));
  });

  app.put('/v1/companies/:companyId/offices/:officeId/invoice-settings', { bodyLimit: 8 * 1024 }, async (request) => {
    const { companyId, officeId } = parse(officeParams, request.params);
    const body = parse(officeInvoiceSettingsSchema, request.body);
    await guard.authorize(request, 'payment_config:write', { companyId, officeId });
    if (!(await rejectIfShredded(deps.models, companyId))) {
      throw new ApiError(404, 'company_not_found', 'no such company');
    }
    const id = invoiceSettingsId(companyId, officeId);
    const before = await InvoiceSettings.findById(id).lean();
    const { $set, $unset } = mergeUpdate(body);
    const after = await writeAudited(request, guard, {
      holder: InvoiceSettings,
      id,
      event: {
        companyId,
        officeId,
        action: 'invoice_settings.updated',
        resource: { type: 'invoice_settings', id: `${companyId}-${officeId}` },
        permission: 'payment_config:write',
        changes: settingsChanges(before, mergedRecord(before, $set, $unset)),
      },
      write: (pendingAudit) =>
        InvoiceSettings.findOneAndUpdate(
          { _id: id },
          {
            $set: { companyId, officeId, ...$set, ...pendingAudit, updatedBy: actorOf(request) },
            ...(Object.keys($unset).length > 0 ? { $unset } : {}),
          },
          { upsert: true, new: true },
        ).lean(),
    });
    const [companySettings, company] = await Promise.all([
      InvoiceSettings.findById(invoiceSettingsId(companyId)).lean(),
      Company.findById(companyId, { name: 1 }).lean(),
    ]);
    return {
      officeId,
      ...effectiveInvoiceSettings(company?.name ?? companyId, storedSettings(companySettings), storedSettings(after)),
    };
  });

  app.put('/v1/companies/:companyId/payers/:customerRef', { bodyLimit: 4 * 1024 }, async (request) => {
    const { companyId, customerRef } = parse(payerParams, request.params);
    const body = parse(payerProfileSchema, request.body);
    await guard.authorize(request, 'payments:create', { companyId, resource: { type: 'payer', id: customerRef } });
    if (!(await rejectIfShredded(deps.models, companyId))) {
      throw new ApiError(404, 'company_not_found', 'no such company');
    }
    const id = payerProfileId(companyId, customerRef);
    const existed = Boolean(await PayerProfile.exists({ _id: id }));
    const [name, billingAddress, email] = await Promise.all([
      deps.encryption.encrypt(companyId, body.name),
      deps.encryption.encrypt(companyId, JSON.stringify(body.billingAddress)),
      deps.encryption.encrypt(companyId, body.email),
    ]);
    await writeAudited(request, guard, {
      holder: PayerProfile,
      id,
      // Which fields were written, never their values.
      event: {
        companyId,
        action: 'payer.updated',
        resource: { type: 'payer', id: customerRef },
        permission: 'payments:create',
        changes: ['name', 'billingAddress', 'email'].map((field) => ({
          field,
          before: existed ? '[set]' : null,
          after: '[set]',
        })),
      },
      write: (pendingAudit) =>
        PayerProfile.updateOne(
          { _id: id },
          {
            $set: { companyId, customerRef, name, billingAddress, email, ...pendingAudit, updatedBy: actorOf(request) },
          },
          { upsert: true },
        ),
    });
    return { customerRef, updated: existed ? 'replaced' : 'created' };
  });
}
