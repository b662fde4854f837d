import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Permission } from '../../domain/access-policy';
import { resolvePaymentConfig, type Compliance, type PaymentSettings } from '../../domain/payment-config';
import {
  attestationSchema,
  companyPaymentConfigSchema,
  keyEnvironmentProblem,
  maskedSettings,
  officePaymentConfigSchema,
  settingsChanges,
  type OfficePaymentConfigInput,
} from '../../domain/payment-config-input';
import type { Database } from '../../models';
import {
  loadPaymentLevels,
  recordAttestation,
  updatePaymentSettings,
  type PaymentSettingsUpdate,
  type PaymentTarget,
} from '../../models/payment-config';
import type { AccessGuard } from '../access-guard';
import { ApiError } from '../errors';
import { parse, scopeIdSchema } from '../validation';

export interface PaymentConfigRouteDeps {
  db: Pick<Database, 'models' | 'encryption'>;
  guard: Pick<AccessGuard, 'authorize' | 'record'>;
  runtime: { production: boolean; allowTestKeysInProduction: boolean };
}

const companyParams = z.object({ companyId: scopeIdSchema }).strict();
const officeParams = companyParams.extend({ officeId: scopeIdSchema }).strict();

function toUpdate(input: OfficePaymentConfigInput): PaymentSettingsUpdate {
  return {
    secretKey: input.credentials.secretKey,
    publishableKey: input.credentials.publishableKey,
    webhookSigningSecrets: input.credentials.webhookSigningSecrets,
    accountId: input.credentials.accountId,
    statementDescriptor: input.statementDescriptor,
    defaultCurrency: input.defaultCurrency,
    dunningPolicy: input.dunningPolicy,
  };
}

/** What a level would hold after the update (to check required credentials before writing anything). */
function applied(current: PaymentSettings, update: PaymentSettingsUpdate): PaymentSettings {
  const next: Record<string, unknown> = { ...current };
  for (const [field, value] of Object.entries(update)) {
    if (field === 'mode' || value === undefined) continue;
    if (value === null) delete next[field];
    else next[field] = value;
  }
  return next as PaymentSettings;
}

/** The audited resource: a company's configuration, or one office's (`co_….off_…`). */
function configResource(target: PaymentTarget) {
  return { type: 'payment_config', id: target.officeId ? `${target.companyId}.${target.officeId}` : target.companyId };
}

export function registerPaymentConfigRoutes(app: FastifyInstance, deps: PaymentConfigRouteDeps): void {
  const { db, guard } = deps;

  async function authorize(request: FastifyRequest, permission: Permission, target: PaymentTarget) {
    await guard.authorize(request, permission, {
      ...target,
      resource: configResource(target),
    });
    const levels = await loadPaymentLevels(db.models, target);
    if (!levels.companyExists) throw new ApiError(404, 'company_not_found', 'no such company');
    return levels;
  }

  function checkKeyEnvironments(update: PaymentSettingsUpdate) {
    const problems = (['secretKey', 'publishableKey'] as const)
      .map((field) => ({ field, message: keyEnvironmentProblem(update[field], deps.runtime) }))
      .filter((p): p is { field: 'secretKey' | 'publishableKey'; message: string } => Boolean(p.message))
      .map((p) => ({ field: `credentials.${p.field}`, message: p.message }));
    if (problems.length > 0) throw ApiError.invalid(problems);
  }

  /**
   * Checks an update of one level (company or office) against what it holds now, writes it, and answers what the
   * level holds afterwards; `secretKeyRequired` says why the level must keep a secret key, when it must.
   */
  async function writeSettings(
    request: FastifyRequest,
    target: PaymentTarget,
    update: PaymentSettingsUpdate,
    before: PaymentSettings,
    secretKeyRequired: string | undefined,
  ) {
    checkKeyEnvironments(update);
    const after = applied(before, update);
    if (secretKeyRequired && !after.secretKey) {
      throw ApiError.invalid([{ field: 'credentials.secretKey', message: secretKeyRequired }]);
    }
    await updatePaymentSettings(db, target, update, request.principal!.subject);
    return { after, changes: settingsChanges(before, after) };
  }

  async function audit(
    request: FastifyRequest,
    target: PaymentTarget,
    action: 'payment_config.read' | 'payment_config.updated' | 'payment_config.attested',
    changes?: ReturnType<typeof settingsChanges>,
  ) {
    await guard.record(request, {
      companyId: target.companyId,
      action,
      resource: configResource(target),
      ...(changes ? { changes } : {}),
    });
  }

  function view(target: PaymentTarget, mode: string | undefined, settings: PaymentSettings) {
    return {
      companyId: target.companyId,
      ...(target.officeId ? { officeId: target.officeId } : { mode: mode ?? null }),
      gateway: 'stripe',
      ...maskedSettings(settings),
    };
  }

  app.put('/v1/companies/:companyId/payment-config', async (request) => {
    const target = parse(companyParams, request.params);
    const input = parse(companyPaymentConfigSchema, request.body);
    const levels = await authorize(request, 'payment_config:write', target);
    const { after, changes } = await writeSettings(
      request,
      target,
      { mode: input.mode, ...toUpdate(input) },
      levels.company?.settings ?? {},
      input.mode !== 'office' ? `is required in ${input.mode} mode` : undefined,
    );
    if (levels.company?.mode !== input.mode)
      changes.unshift({ field: 'mode', before: levels.company?.mode ?? null, after: input.mode });
    await audit(request, target, 'payment_config.updated', changes);
    return view(target, input.mode, after);
  });

  app.get('/v1/companies/:companyId/payment-config', async (request) => {
    const target = parse(companyParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await audit(request, target, 'payment_config.read');
    return view(target, levels.company?.mode, levels.company?.settings ?? {});
  });

  app.put('/v1/companies/:companyId/offices/:officeId/payment-config', async (request) => {
    const target = parse(officeParams, request.params);
    const input = parse(officePaymentConfigSchema, request.body);
    const levels = await authorize(request, 'payment_config:write', target);
    const mode = levels.company?.mode ?? 'company';
    if (mode === 'company') {
      throw new ApiError(
        409,
        'office_override_not_allowed',
        'the company takes payments at company level; offices may not override (set mode to office or hybrid first)',
      );
    }
    const { after, changes } = await writeSettings(
      request,
      target,
      toUpdate(input),
      levels.office?.settings ?? {},
      mode === 'office' ? 'is required: the company takes payments per office' : undefined,
    );
    await audit(request, target, 'payment_config.updated', changes);
    return view(target, undefined, after);
  });

  app.get('/v1/companies/:companyId/offices/:officeId/payment-config', async (request) => {
    const target = parse(officeParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await audit(request, target, 'payment_config.read');
    return view(target, undefined, levels.office?.settings ?? {});
  });

  app.get('/v1/companies/:companyId/offices/:officeId/payment-config/effective', async (request) => {
    const target = parse(officeParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await audit(request, target, 'payment_config.read');
    const resolved = resolvePaymentConfig(levels.company, levels.office);
    if (!resolved.ok) {
      return {
        companyId: target.companyId,
        officeId: target.officeId,
        usable: false,
        problem: { code: resolved.code, message: resolved.message, missing: resolved.missing },
      };
    }
    return {
      companyId: target.companyId,
      officeId: target.officeId,
      mode: resolved.mode,
      usable: Boolean(resolved.settings.compliance),
      ...(resolved.settings.compliance
        ? {}
        : { problem: { code: 'gateway_not_attested', message: 'no BAA or section 1179 attestation applies' } }),
      gateway: 'stripe',
      ...maskedSettings(resolved.settings),
      sources: resolved.sources,
    };
  });

  async function attest(request: FastifyRequest, target: PaymentTarget) {
    const input = parse(attestationSchema, request.body);
    const levels = await authorize(request, 'payment_config:write', target);
    const compliance: Compliance = {
      ...input,
      attestedBy: request.principal!.subject,
      attestedAt: new Date().toISOString(),
    };
    const before = (target.officeId ? levels.office?.settings : levels.company?.settings) ?? {};
    await recordAttestation(db, target, compliance);
    await audit(request, target, 'payment_config.attested', settingsChanges(before, { ...before, compliance }));
    return { companyId: target.companyId, ...(target.officeId ? { officeId: target.officeId } : {}), compliance };
  }

  app.post('/v1/companies/:companyId/payment-config/attestation', async (request, reply) => {
    return reply.status(201).send(await attest(request, parse(companyParams, request.params)));
  });
  app.post('/v1/companies/:companyId/offices/:officeId/payment-config/attestation', async (request, reply) => {
    return reply.status(201).send(await attest(request, parse(officeParams, request.params)));
  });
}
