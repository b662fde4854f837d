import type {
  Compliance,
  CompanyPaymentLevel,
  OfficePaymentLevel,
  PaymentMode,
  PaymentSettings,
} from '../domain/payment-config';
import type { Database, Models } from './index';
import { PAYMENT_INFO_VERSION, type StoredPaymentInfo } from './company.model';
import { officeRecordId } from './office.model';
import { pendingAuditPath, pendingAuditSet, type PendingAudit } from './pending-audit';
import type { SettingsReads } from './settings-cache';

export interface PaymentTarget {
  companyId: string;
  officeId?: string;
}

/** null removes a setting; an absent field leaves it as it is (secrets are write-only, so they are never echoed back). */
export type PaymentSettingsUpdate = {
  [K in keyof PaymentSettings]?: PaymentSettings[K] | null;
} & { mode?: PaymentMode };

const text = (value: unknown): string | undefined => (typeof value === 'string' && value !== '' ? value : undefined);

/** Stored (read back decrypted) → plaintext settings. */
export function settingsFromStored(info: StoredPaymentInfo | undefined): PaymentSettings {
  if (!info) return {};
  const secrets = info.credentials?.webhookSigningSecrets?.map(text).filter((s): s is string => Boolean(s));
  const settings: PaymentSettings = {
    secretKey: text(info.credentials?.secretKey),
    publishableKey: text(info.credentials?.publishableKey),
    webhookSigningSecrets: secrets && secrets.length > 0 ? secrets : undefined,
    accountId: text(info.credentials?.accountId),
    statementDescriptor: info.statementDescriptor,
    defaultCurrency: info.defaultCurrency,
    dunningPolicy: info.dunningPolicy,
    compliance: info.compliance,
  };
  return Object.fromEntries(Object.entries(settings).filter(([, v]) => v !== undefined)) as PaymentSettings;
}

export async function loadPaymentLevels(
  models: Pick<Models, 'Company' | 'Office'>,
  target: PaymentTarget,
  /** Read the office only when the company's mode uses office settings (one round trip fewer per charge). */
  options: {
    officeOnlyWhenUsed?: boolean;
    /** The process's settings cache (models/settings-cache.ts): reads it validates instead of the database's. */
    reads?: Pick<SettingsReads, 'company' | 'office'>;
  } = {},
): Promise<{
  company?: CompanyPaymentLevel;
  office?: OfficePaymentLevel;
  companyExists: boolean;
  companyShredded: boolean;
}> {
  // Driver calls on the models' collections (the decrypting client): a mongoose query per read cost the webhook
  // path about a tenth of its CPU (casting, the query object, the stack it keeps) for two plain `_id` reads.
  const findCompany = () =>
    models.Company.collection.findOne<{ payment_info?: StoredPaymentInfo; shreddedAt?: Date }>(
      { _id: target.companyId as never },
      { projection: { payment_info: 1, shreddedAt: 1 } },
    );
  const findOffice = () =>
    target.officeId
      ? models.Office.collection.findOne<{ payment_info?: StoredPaymentInfo }>(
          { _id: officeRecordId(target.companyId, target.officeId) as never },
          { projection: { payment_info: 1 } },
        )
      : null;
  let company: { payment_info?: StoredPaymentInfo; shreddedAt?: Date } | null;
  let office: { payment_info?: StoredPaymentInfo } | null;
  const { reads } = options;
  if (reads) {
    const cached = await reads.company(target.companyId, target.officeId);
    if (cached?.paymentInfoShredded) throw new ShreddedPaymentInfoError(target.companyId);
    company = cached;
    const mode = company?.payment_info?.mode ?? 'company';
    office =
      target.officeId && (mode !== 'company' || !options.officeOnlyWhenUsed)
        ? await reads.office(target.companyId, target.officeId)
        : null;
  } else if (options.officeOnlyWhenUsed) {
    company = await findCompany();
    const mode = company?.payment_info?.mode ?? 'company';
    office = mode === 'company' ? null : await findOffice();
  } else {
    [company, office] = await Promise.all([findCompany(), findOffice()]);
  }
  return {
    companyExists: Boolean(company),
    companyShredded: Boolean(company?.shreddedAt),
    company: company?.payment_info
      ? {
          companyId: target.companyId,
          mode: company.payment_info.mode ?? 'company',
          settings: settingsFromStored(company.payment_info),
        }
      : undefined,
    office: target.officeId
      ? { officeId: target.officeId, settings: settingsFromStored(office?.payment_info) }
      : undefined,
  };
}

/** A cached company whose payment configuration could not be decrypted (its data key was shredded). */
export class ShreddedPaymentInfoError extends Error {
  override readonly name = 'ShreddedPaymentInfoError';
  constructor(readonly companyId: string) {
    super(`company ${companyId}'s payment configuration was crypto-shredded`);
  }
}

const SECRET_PATHS = {
  secretKey: 'credentials.secretKey',
  webhookSigningSecrets: 'credentials.webhookSigningSecrets',
  accountId: 'credentials.accountId',
} as const;
const PLAIN_PATHS = {
  publishableKey: 'credentials.publishableKey',
  statementDescriptor: 'statementDescriptor',
  defaultCurrency: 'defaultCurrency',
  dunningPolicy: 'dunningPolicy',
} as const;

/**
 * Applies an update to one level (company, or an office — created on first
 * write) in a single-document write; secrets are encrypted here, before they
 * leave the process. `pending`: the audit events of this change, stored in the
 * same write (models/pending-audit.ts).
 */
export async function updatePaymentSettings(
  db: Pick<Database, 'encryption' | 'models'>,
  target: PaymentTarget,
  update: PaymentSettingsUpdate,
  actor: string,
  pending?: PendingAudit,
): Promise<void> {
  const { companyId } = target;
  const set: Record<string, unknown> = {
    ...pendingAuditSet(pending),
    'payment_info.version': PAYMENT_INFO_VERSION,
    'payment_info.gateway': 'stripe',
    'payment_info.updatedAt': new Date(),
    'payment_info.updatedBy': actor,
  };
  const unset: Record<string, 1> = {};
  const path = (suffix: string) => `payment_info.${suffix}`;
  if (update.mode) set[path('mode')] = update.mode;

  for (const [field, suffix] of Object.entries(SECRET_PATHS) as Array<[keyof typeof SECRET_PATHS, string]>) {
    const value = update[field];
    if (value === undefined) continue;
    if (value === null) unset[path(suffix)] = 1;
    else if (Array.isArray(value))
      set[path(suffix)] = await Promise.all(value.map((v) => db.encryption.encrypt(companyId, v)));
    else
      set[path(suffix)] = await db.encryption.encrypt(
        companyId,
        value,
        field === 'accountId' ? 'deterministic' : 'random',
      );
  }
  for (const [field, suffix] of Object.entries(PLAIN_PATHS) as Array<[keyof typeof PLAIN_PATHS, string]>) {
    const value = update[field];
    if (value === undefined) continue;
    if (value === null) unset[path(suffix)] = 1;
    else set[path(suffix)] = value;
  }
  // In the same write as the credentials it attests (or that clear it): never a key without its attestation's fate.
  if (update.compliance === null) unset[path('compliance')] = 1;
  else if (update.compliance) set[path('compliance')] = update.compliance;
  await writeLevel(db, target, { $set: set, ...(Object.keys(unset).length > 0 ? { $unset: unset } : {}) });
}

export async function recordAttestation(
  db: Pick<Database, 'models'>,
  target: PaymentTarget,
  compliance: Compliance,
  pending?: PendingAudit,
): Promise<void> {
  await writeLevel(db, target, {
    $set: {
      ...pendingAuditSet(pending),
      'payment_info.compliance': compliance,
      'payment_info.version': PAYMENT_INFO_VERSION,
      'payment_info.gateway': 'stripe',
    },
  });
}

/** Once a change's audit events are queued, they are no longer pending. */
export async function clearPendingAudit(
  db: Pick<Database, 'models'>,
  target: PaymentTarget,
  key: string,
): Promise<void> {
  const update = { $unset: { [pendingAuditPath(key)]: 1 } };
  if (target.officeId) {
    await db.models.Office.updateOne({ _id: officeRecordId(target.companyId, target.officeId) }, update);
  } else {
    await db.models.Company.updateOne({ _id: target.companyId }, update);
  }
}

async function writeLevel(
  db: Pick<Database, 'models'>,
  target: PaymentTarget,
  update: Record<string, unknown>,
): Promise<void> {
  if (target.officeId) {
    await db.models.Office.updateOne(
      { _id: officeRecordId(target.companyId, target.officeId) },
      { ...update, $setOnInsert: { companyId: target.companyId, officeId: target.officeId } },
      { upsert: true },
    );
  } else {
    await db.models.Company.updateOne({ _id: target.companyId }, update);
  }
}
