import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import {
  companyInvoiceSettingsSchema,
  effectiveInvoiceSettings,
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
import { ApiError } from '../errors';
import { rejectIfShredded } from '../payment-access';
import { parse, scopeIdSchema } from '../validation';

export interface InvoiceSettingsRouteDeps {
  models: Pick<Models, 'Company' | 'InvoiceSettings' | 'PayerProfile'>;
  encryption: Pick<FieldEncryption, 'encrypt'>;
  guard: AccessGuard;
}

const companyParams = z.object({ companyId: scopeIdSchema }).strict();
const officeParams = z.object({ companyId: scopeIdSchema, officeId: scopeIdSchema }).strict();
const payerParams = z
  .object({ companyId: scopeIdSchema, customerRef: z.string().regex(CUSTOMER_REF_PATTERN) })
  .strict();

const actorOf = (request: FastifyRequest) => ({
  type: request.principal!.subjectType,
  id: request.principal!.subject,
});

/** A letterhead in an audit event: whether it changed, not the text (it is the practice's, but free text). */
const letterheadMark = (letterhead?: Letterhead) => (letterhead ? `[set ${letterhead.address.length} lines]` : null);

function settingsChanges(before: InvoiceSettingsRecord | null, after: Partial<InvoiceSettingsRecord>) {
  const fields = ['numberPrefix', 'phiLevel', 'requireDownloadReason'] as const;
  return [
    ...fields
      .filter((field) => field in after)
      .map((field) => ({
        field,
        before: before?.[field] === undefined ? null : String(before[field]),
        after: after[field] === undefined ? null : String(after[field]),
      })),
    { field: 'letterhead', before: letterheadMark(before?.letterhead), after: letterheadMark(after.letterhead) },
  ];
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
    const set = { companyId, ...body, updatedBy: actorOf(request) };
    await InvoiceSettings.updateOne(
      { _id: id },
      { $set: set, ...(body.letterhead ? {} : { $unset: { letterhead: 1 } }) },
      { upsert: true },
    );
    await guard.record(request, {
      companyId,
      action: 'invoice_settings.updated',
      resource: { type: 'invoice_settings', id: companyId },
      permission: 'payment_config:write',
      changes: settingsChanges(before, body),
    });
    const company = await Company.findById(companyId, { name: 1 }).lean();
    return effectiveInvoiceSettings(company?.name ?? companyId, body);
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
    // The body is the office's whole override: a field left out falls back to the company's.
    const unset = (['phiLevel', 'letterhead'] as const).filter((field) => body[field] === undefined);
    await InvoiceSettings.updateOne(
      { _id: id },
      {
        $set: { companyId, officeId, ...body, updatedBy: actorOf(request) },
        ...(unset.length > 0 ? { $unset: Object.fromEntries(unset.map((field) => [field, 1])) } : {}),
      },
      { upsert: true },
    );
    await guard.record(request, {
      companyId,
      officeId,
      action: 'invoice_settings.updated',
      resource: { type: 'invoice_settings', id: `${companyId}-${officeId}` },
      permission: 'payment_config:write',
      changes: settingsChanges(before, {
        phiLevel: body.phiLevel,
        ...(body.letterhead ? { letterhead: body.letterhead } : {}),
      }),
    });
    const [companySettings, company] = await Promise.all([
      InvoiceSettings.findById(invoiceSettingsId(companyId)).lean(),
      Company.findById(companyId, { name: 1 }).lean(),
    ]);
    return { officeId, ...effectiveInvoiceSettings(company?.name ?? companyId, companySettings ?? undefined, body) };
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
    await PayerProfile.updateOne(
      { _id: id },
      { $set: { companyId, customerRef, name, billingAddress, email, updatedBy: actorOf(request) } },
      { upsert: true },
    );
    // Which fields were written, never their values.
    await guard.record(request, {
      companyId,
      action: 'payer.updated',
      resource: { type: 'payer', id: customerRef },
      permission: 'payments:create',
      changes: ['name', 'billingAddress', 'email'].map((field) => ({
        field,
        before: existed ? '[set]' : null,
        after: '[set]',
      })),
    });
    return { customerRef, updated: existed ? 'replaced' : 'created' };
  });
}
