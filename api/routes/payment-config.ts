import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ulid } from '../../platform/ids';
import { z } from 'zod';
import type { Permission } from '../../domain/access-policy';
import { transitionEventId } from '../../domain/audit-actions';
import { attestationKept, officeAccountProblem } from '../../domain/payment-account';
import {
  resolvePaymentConfig,
  type Compliance,
  type PaymentMode,
  type PaymentSettings,
  type SettingField,
} from '../../domain/payment-config';
import {
  attestationSchema,
  companyPaymentConfigSchema,
  keyEnvironmentProblem,
  maskedSettings,
  officePaymentConfigSchema,
  settingsChanges,
  type AttestationInput,
  type OfficePaymentConfigInput,
} from '../../domain/payment-config-input';
import { GatewayError, type PaymentGateway } from '../../domain/payment-gateway';
import type { Database } from '../../models';
import {
  clearPendingAudit,
  loadPaymentLevels,
  recordAttestation,
  updatePaymentSettings,
  type PaymentSettingsUpdate,
  type PaymentTarget,
} from '../../models/payment-config';
import type { PendingAudit } from '../../models/pending-audit';
import type { AccessGuard } from '../access-guard';
import { ApiError } from '../errors';
import { parse, scopeIdSchema } from '../validation';

export interface PaymentConfigRouteDeps {
  db: Pick<Database, 'models' | 'encryption'>;
  /** Asked which Stripe account a key belongs to when it is saved. */
  gateway: Pick<PaymentGateway, 'retrieveAccountId'>;
  guard: Pick<AccessGuard, 'authorize' | 'record' | 'prepare' | 'send'>;
  runtime: { production: boolean; allowTestKeysInProduction: boolean };
}

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();
export const officeParams = companyParams.extend({ officeId: scopeIdSchema }).strict();

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

/** Where each account field is given in a request, to name what an incomplete office account lacks. */
const REQUEST_FIELD: Partial<Record<SettingField, string>> = {
  secretKey: 'credentials.secretKey',
  accountId: 'credentials.accountId',
  webhookSigningSecrets: 'credentials.webhookSigningSecrets',
  compliance: 'attestation',
};

/** Refuses an office level that would hold part of a gateway account of its own (see officeAccountProblem). */
function checkOfficeAccount(mode: PaymentMode, after: PaymentSettings): void {
  const problem = officeAccountProblem(mode, after);
  if (!problem) return;
  throw new ApiError(
    409,
    'office_account_incomplete',
    mode === 'hybrid'
      ? "an office with a gateway account of its own sets its key, signing secrets and attestation together (one PUT may carry all three; the account id is Stripe's answer for the key); otherwise it uses the company's account"
      : "the company takes payments per office; an office attestation needs the office's own gateway key first",
    problem.missing.map((field) => ({ field: REQUEST_FIELD[field] ?? field, message: 'is required' })),
  );
}

type ConfigChanges = ReturnType<typeof settingsChanges>;

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
   * The account id saved with a new key (or checked when one is named): Stripe's own answer for the key
   * (`GET /v1/account`), so that an attestation covers the account the key really reaches and goes when a new key
   * reaches another. A named account id that is not the key's is refused; so is a key Stripe refuses. Nothing is saved
   * when Stripe cannot be asked.
   */
  async function accountOfKey(
    before: PaymentSettings,
    update: PaymentSettingsUpdate,
  ): Promise<Pick<PaymentSettingsUpdate, 'accountId'>> {
    if (update.secretKey === undefined && !update.accountId) return {};
    const secretKey = update.secretKey === undefined ? before.secretKey : update.secretKey;
    if (!secretKey) return {};
    let accountId: string;
    try {
      accountId = await deps.gateway.retrieveAccountId({ secretKey });
    } catch (error) {
      if (error instanceof GatewayError && error.kind !== 'transient') {
        throw new ApiError(
          422,
          'secret_key_refused',
          'Stripe refused the secret key (it must be able to read its account); nothing was saved',
          [{ field: 'credentials.secretKey', message: 'is refused by Stripe' }],
        );
      }
      throw new ApiError(
        503,
        'gateway_unavailable',
        'Stripe could not be asked which account the secret key belongs to; nothing was saved, try again',
      );
    }
    if (update.accountId && update.accountId !== accountId) {
      throw new ApiError(
        422,
        'account_mismatch',
        'the secret key belongs to another Stripe account than the one named; nothing was saved',
        [{ field: 'credentials.accountId', message: 'is not the account of the secret key' }],
      );
    }
    return { accountId };
  }

  /** An attestation is a person's statement (a BAA signed, an exemption assessed): a service token cannot make one. */
  function complianceFrom(request: FastifyRequest, input: AttestationInput): Compliance {
    if (request.principal!.subjectType !== 'user') {
      throw new ApiError(
        403,
        'attestation_requires_user',
        'an attestation is made by a person (a user token), not by a service',
      );
    }
    return { ...input, attestedBy: request.principal!.subject, attestedAt: new Date().toISOString() };
  }

  /**
   * Checks an update of one level (company or office) against what it holds now, writes it with its audit events,
   * sends them, and answers what the level holds afterwards. An attestation in the request is written with it;
   * without one, the level's attestation goes when the update moves it to another (or an unknown) gateway account
   * (attestationKept).
   */
  async function writeSettings(
    request: FastifyRequest,
    target: PaymentTarget,
    settingsUpdate: PaymentSettingsUpdate,
    before: PaymentSettings,
    rules: {
      secretKeyRequired?: string;
      officeMode?: PaymentMode;
      attestation?: AttestationInput;
      modeChange?: ConfigChanges[number];
    },
  ) {
    checkKeyEnvironments(settingsUpdate);
    const update: PaymentSettingsUpdate = { ...settingsUpdate, ...(await accountOfKey(before, settingsUpdate)) };
    if (rules.attestation) update.compliance = complianceFrom(request, rules.attestation);
    else if (before.compliance && !attestationKept(before, applied(before, update))) update.compliance = null;
    const after = applied(before, update);
    if (rules.secretKeyRequired && !after.secretKey) {
      throw ApiError.invalid([{ field: 'credentials.secretKey', message: rules.secretKeyRequired }]);
    }
    if (rules.officeMode) checkOfficeAccount(rules.officeMode, after);
    const changes = settingsChanges(before, after);
    if (rules.modeChange) changes.unshift(rules.modeChange);
    // A write is audited as a change; one that carries an attestation is audited as an attestation too.
    const pending = await auditOfChange(request, target, [
      { action: 'payment_config.updated', changes },
      ...(rules.attestation
        ? [
            {
              action: 'payment_config.attested' as const,
              changes: changes.filter((change) => change.field === 'compliance'),
            },
          ]
        : []),
    ]);
    await updatePaymentSettings(db, target, update, request.principal!.subject, pending);
    await sendAudit(request, target, pending);
    return after;
  }

  /** A read is audited before anything is shown (503 `audit_unavailable` when it cannot be). */
  async function auditRead(request: FastifyRequest, target: PaymentTarget) {
    await guard.record(request, {
      companyId: target.companyId,
      action: 'payment_config.read',
      resource: configResource(target),
    });
  }

  /**
   * The audit events of one change, to be stored with it: their ids derive from the change's own id, fixed here, so
   * the route and the outbox sweep (should this process die, or Redis not take them) record each once.
   */
  async function auditOfChange(
    request: FastifyRequest,
    target: PaymentTarget,
    events: Array<{ action: 'payment_config.updated' | 'payment_config.attested'; changes: ConfigChanges }>,
  ): Promise<PendingAudit> {
    const key = `cfg_${ulid()}`;
    return {
      key,
      events: await Promise.all(
        events.map(({ action, changes }) =>
          guard.prepare(
            request,
            { companyId: target.companyId, action, resource: configResource(target), changes },
            transitionEventId(action, key),
          ),
        ),
      ),
    };
  }

  /**
   * Sends a stored change's audit events. When Redis does not take them the change stands (it is written) and the
   * outbox sweep sends them; the caller gets a 503 saying so, not a success that nothing has audited yet.
   */
  async function sendAudit(request: FastifyRequest, target: PaymentTarget, pending: PendingAudit) {
    if (!(await guard.send(request, pending.events))) {
      throw new ApiError(
        503,
        'audit_unavailable',
        'the change is saved, but its audit events could not be queued; they are kept with it and the outbox sweep records them once the queue is back (no retry is needed)',
      );
    }
    try {
      await clearPendingAudit(db, target, pending.key);
    } catch (error) {
      // Queued already: should the events stay marked pending, the sweep sends them again under the same ids.
      request.log.warn({ err: error, key: pending.key }, 'audit events queued but still marked pending');
    }
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
    const after = await writeSettings(
      request,
      target,
      { mode: input.mode, ...toUpdate(input) },
      levels.company?.settings ?? {},
      {
        secretKeyRequired: input.mode !== 'office' ? `is required in ${input.mode} mode` : undefined,
        attestation: input.attestation,
        modeChange:
          levels.company?.mode !== input.mode
            ? { field: 'mode', before: levels.company?.mode ?? null, after: input.mode }
            : undefined,
      },
    );
    return view(target, input.mode, after);
  });

  app.get('/v1/companies/:companyId/payment-config', async (request) => {
    const target = parse(companyParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await auditRead(request, target);
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
    const after = await writeSettings(request, target, toUpdate(input), levels.office?.settings ?? {}, {
      secretKeyRequired: mode === 'office' ? 'is required: the company takes payments per office' : undefined,
      officeMode: mode,
      attestation: input.attestation,
    });
    return view(target, undefined, after);
  });

  app.get('/v1/companies/:companyId/offices/:officeId/payment-config', async (request) => {
    const target = parse(officeParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await auditRead(request, target);
    return view(target, undefined, levels.office?.settings ?? {});
  });

  app.get('/v1/companies/:companyId/offices/:officeId/payment-config/effective', async (request) => {
    const target = parse(officeParams, request.params);
    const levels = await authorize(request, 'payment_config:read', target);
    await auditRead(request, target);
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
    const compliance = complianceFrom(request, input);
    const before = (target.officeId ? levels.office?.settings : levels.company?.settings) ?? {};
    if (target.officeId) {
      const mode = levels.company?.mode ?? 'company';
      if (mode === 'company') {
        throw new ApiError(
          409,
          'office_override_not_allowed',
          'the company takes payments at company level; attest its configuration, not an office',
        );
      }
      checkOfficeAccount(mode, { ...before, compliance });
    }
    const pending = await auditOfChange(request, target, [
      { action: 'payment_config.attested', changes: settingsChanges(before, { ...before, compliance }) },
    ]);
    await recordAttestation(db, target, compliance, pending);
    await sendAudit(request, target, pending);
    return { companyId: target.companyId, ...(target.officeId ? { officeId: target.officeId } : {}), compliance };
  }

  app.post('/v1/companies/:companyId/payment-config/attestation', async (request, reply) => {
    return reply.status(201).send(await attest(request, parse(companyParams, request.params)));
  });
  app.post('/v1/companies/:companyId/offices/:officeId/payment-config/attestation', async (request, reply) => {
    return reply.status(201).send(await attest(request, parse(officeParams, request.params)));
  });
}
