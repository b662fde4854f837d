import { ClientEncryption, type Binary, type Document, type MongoClient } from 'mongodb';
import { ZodError } from 'zod';
import { PLATFORM_AUDIT_SCOPE, transitionEventId } from '../../domain/audit-actions';
import type { KmsConfig } from '../../platform/config';
import { withDeadline } from '../../platform/deadline';
import type { Queues } from '../../queues';
import { type AuditEventInput } from '../../domain/audit-event';
import { enqueueAuditEvent } from '../../queues/audit.queue';
import {
  ALGORITHMS,
  keyVaultCollection,
  kmsProvidersFor,
  kmsTlsOptionsFor,
  localMasterKeyFor,
  masterKeyFor,
  type MasterKey,
} from '../../models/encryption';

/**
 * Master-key rotation: every data key in the key vault is re-wrapped
 * (`rewrapManyDataKey`) under KMS_PROVIDER's master key, then each one is
 * proved to unwrap with that provider's credentials alone. The data encrypted
 * under the data keys is never touched, so nothing is re-encrypted.
 */

export interface KeyRotationDeps {
  /** A client without automatic decryption: the key vault as stored. */
  client: MongoClient;
  kms: KmsConfig;
  keyVaultNamespace: string;
  queues: Pick<Queues, 'audit'>;
}

export interface KeyRotationRequest {
  /** Opaque id of this run: both of its audit events carry it. */
  runId: string;
  actor: AuditEventInput['actor'];
}

export interface UnverifiedKey {
  keyId: string;
  keyAltNames: string[];
  problem: string;
}

export interface KeyRotationReport {
  keyVault: string;
  /** The master key everything is wrapped under now, e.g. `aws:arn:aws:kms:…`. */
  target: string;
  /** Where the re-wrapped keys came from: master key → how many. */
  rewrappedFrom: Record<string, number>;
  rewrapped: number;
  alreadyAtTarget: number;
  /** Data keys in the vault after the run. */
  total: number;
  /** Of those, how many unwrapped (a probe encrypted and decrypted) with the target provider's credentials alone. */
  verified: number;
  unverified: UnverifiedKey[];
}

/** Asked for something libmongocrypt cannot do here; nothing was changed. */
export class KeyRotationRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyRotationRefusedError';
  }
}

const REWRAP_BATCH = 100;
const VERIFY_CONCURRENCY = 8;
const AUDIT_DEADLINE_MS = 5_000;
const PROBE = 'key-rotation-probe';
const AUDIT_VALUE_MAX = 200;

type KeyDocument = { _id: Binary; keyAltNames?: string[]; masterKey?: Document };

/** A master key as people and the audit trail see it: provider and key name, never credentials. */
export function describeMasterKey(masterKey: Document | undefined): string {
  const m = masterKey ?? {};
  switch (m.provider) {
    case 'local':
      return 'local';
    case 'aws':
      return `aws:${String(m.key)}${m.endpoint ? `@${String(m.endpoint)}` : ''}`;
    case 'gcp':
      return `gcp:projects/${String(m.projectId)}/locations/${String(m.location)}/keyRings/${String(m.keyRing)}/cryptoKeys/${String(m.keyName)}`;
    case 'azure':
      return `azure:${String(m.keyVaultEndpoint)}/keys/${String(m.keyName)}`;
    case 'kmip':
      return `kmip${m.endpoint ? `:${String(m.endpoint)}` : ''}`;
    default:
      return 'unknown';
  }
}

/** Same provider and same key; a KMIP server names a key object per data key, so its keyId is not compared. */
function isWrappedBy(stored: Document | undefined, target: Document): boolean {
  if (!stored || stored.provider !== target.provider) return false;
  const fields = new Set([...Object.keys(stored), ...Object.keys(target)]);
  fields.delete('provider');
  if (target.provider === 'kmip') fields.delete('keyId');
  return [...fields].every((field) => stored[field] === target[field]);
}

function keyIdOf(key: KeyDocument): string {
  return key._id.toUUID().toHexString();
}

const CREDENTIALS: Record<string, string> = {
  local: 'LOCAL_MASTER_KEY_FILE',
  aws: 'AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY',
  gcp: 'GCP_SERVICE_ACCOUNT_EMAIL and GCP_PRIVATE_KEY',
  azure: 'AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET',
  kmip: 'KMIP_ENDPOINT',
};

function missingCredentials(masterKey: Document | undefined): string {
  const needed = CREDENTIALS[String(masterKey?.provider)];
  return (
    `wrapped by ${describeMasterKey(masterKey)}, whose credentials are not configured` +
    (needed ? `; keep ${needed} set until the rotation verifies` : '')
  );
}

function problemOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
  return `${error.message}${cause}`;
}

function auditValue(value: string): string {
  return value.length <= AUDIT_VALUE_MAX ? value : `${value.slice(0, AUDIT_VALUE_MAX - 1)}…`;
}

function chunks<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function refuseLocalTarget(kms: KmsConfig): void {
  if (kms.provider !== 'local') return;
  throw new KeyRotationRefusedError(
    'keys rotate: KMS_PROVIDER=local cannot be the target of a rotation, so nothing was changed. ' +
      `The libmongocrypt here (${ClientEncryption.libmongocryptVersion}) has no named KMS providers ` +
      '(local:old / local:new need libmongocrypt 1.9+), so a process holds one local master key and cannot ' +
      're-wrap local → local. Rotate into a KMS instead: set KMS_PROVIDER (aws, gcp, azure or kmip) and its ' +
      'master key, keep LOCAL_MASTER_KEY_FILE set so the current data keys can still be unwrapped, run ' +
      '`keys rotate`, then remove LOCAL_MASTER_KEY_FILE.',
  );
}

async function audit(deps: KeyRotationDeps, event: AuditEventInput): Promise<void> {
  try {
    await withDeadline(enqueueAuditEvent(deps.queues.audit, event), AUDIT_DEADLINE_MS, 'audit enqueue');
  } catch (error) {
    if (error instanceof ZodError) throw error;
    throw new Error(`the ${event.action} audit event could not be queued (${problemOf(error)})`, { cause: error });
  }
}

function summarize(counts: Record<string, number>): string | null {
  const parts = Object.entries(counts).map(([key, n]) => `${key} (${n})`);
  return parts.length > 0 ? auditValue(parts.join(', ')) : null;
}

/**
 * Re-wraps every data key not yet under KMS_PROVIDER's master key, then
 * proves each key in the vault unwraps with that provider alone. The keys'
 * current providers must still be configured (see UnwrapOnlyKms). Each key is
 * updated atomically, so a crash leaves every key wrapped by the old or the new
 * master key, and running it again finishes the job. Audited in the platform
 * trail: `keys.rotation_started` before anything changes, `keys.rotated` after.
 */
export async function rotateMasterKey(deps: KeyRotationDeps, request: KeyRotationRequest): Promise<KeyRotationReport> {
  const { kms, keyVaultNamespace } = deps;
  refuseLocalTarget(kms);
  const vault = keyVaultCollection<KeyDocument>(deps.client, keyVaultNamespace);
  const localKey = localMasterKeyFor(kms, false);
  const tlsOptions = kmsTlsOptionsFor(kms);
  const masterKey: MasterKey | undefined = masterKeyFor(kms);
  const target: Document = { provider: kms.provider, ...(masterKey ?? {}) };
  const targetName = describeMasterKey(target);

  const listKeys = () =>
    vault.find({}, { projection: { _id: 1, keyAltNames: 1, masterKey: 1 } }).toArray() as Promise<KeyDocument[]>;
  const before = await listKeys();
  const pending = before.filter((key) => !isWrappedBy(key.masterKey, target));
  const countByMasterKey = (keys: KeyDocument[]): Record<string, number> => {
    const counts: Record<string, number> = {};
    for (const key of keys) {
      const name = describeMasterKey(key.masterKey);
      counts[name] = (counts[name] ?? 0) + 1;
    }
    return counts;
  };

  const event = {
    companyId: PLATFORM_AUDIT_SCOPE,
    severity: 'high',
    actor: request.actor,
    resource: { type: 'key_vault', id: keyVaultNamespace },
    requestId: request.runId,
  } as const;
  await audit(deps, {
    ...event,
    eventId: transitionEventId('keys.rotation_started', request.runId),
    action: 'keys.rotation_started',
    outcome: 'success',
    changes: [
      { field: 'masterKey', before: summarize(countByMasterKey(pending)), after: auditValue(targetName) },
      { field: 'dataKeys.toRewrap', before: null, after: String(pending.length) },
    ],
    occurredAt: new Date().toISOString(),
  });

  const unwrappers = kmsProvidersFor(kms, localKey, 'all');
  const rewrapping = new ClientEncryption(deps.client, { keyVaultNamespace, kmsProviders: unwrappers, tlsOptions });
  const options = { provider: kms.provider, ...(masterKey ? { masterKey } : {}) };
  const rewrapProblems = new Map<string, string>();
  const rewrappable: KeyDocument[] = [];
  const configured = new Set(Object.keys(unwrappers ?? {}));
  for (const key of pending) {
    if (configured.has(String(key.masterKey?.provider))) rewrappable.push(key);
    else rewrapProblems.set(keyIdOf(key), `not re-wrapped: ${missingCredentials(key.masterKey)}`);
  }
  for (const batch of chunks(rewrappable, REWRAP_BATCH)) {
    try {
      await rewrapping.rewrapManyDataKey({ _id: { $in: batch.map((key) => key._id.toUUID()) } }, options);
    } catch {
      // One key libmongocrypt cannot unwrap fails its whole batch: find it, and re-wrap the others.
      for (const key of batch) {
        try {
          await rewrapping.rewrapManyDataKey({ _id: key._id }, options);
        } catch (error) {
          rewrapProblems.set(keyIdOf(key), `not re-wrapped: ${problemOf(error)}`);
        }
      }
    }
  }

  // A new client: libmongocrypt caches unwrapped keys per client, and the proof must reach the KMS.
  const verifying = new ClientEncryption(deps.client, {
    keyVaultNamespace,
    kmsProviders: kmsProvidersFor(kms, localKey, 'target'),
    tlsOptions,
  });
  const after = await listKeys();
  // Counted from the vault as it is now: a key deleted (shredded) meanwhile was not re-wrapped.
  const nowAtTarget = new Set(after.filter((key) => isWrappedBy(key.masterKey, target)).map(keyIdOf));
  const rewrappedKeys = pending.filter((key) => nowAtTarget.has(keyIdOf(key)));
  const rewrappedFrom = countByMasterKey(rewrappedKeys);
  const unverified: UnverifiedKey[] = [];
  const verifyKey = async (key: KeyDocument): Promise<void> => {
    const keyId = keyIdOf(key);
    let problem = rewrapProblems.get(keyId);
    if (!problem && !isWrappedBy(key.masterKey, target)) {
      // Made meanwhile by a process that still runs with the previous configuration.
      problem = `wrapped by ${describeMasterKey(key.masterKey)}, not the target`;
    }
    if (!problem) {
      try {
        const probe = await verifying.encrypt(PROBE, { keyId: key._id, algorithm: ALGORITHMS.random });
        if ((await verifying.decrypt(probe)) !== PROBE) problem = 'the probe did not decrypt to itself';
      } catch (error) {
        problem = `does not unwrap: ${problemOf(error)}`;
      }
    }
    if (problem) unverified.push({ keyId, keyAltNames: key.keyAltNames ?? [], problem });
  };
  for (const batch of chunks(after, VERIFY_CONCURRENCY)) await Promise.all(batch.map(verifyKey));

  const report: KeyRotationReport = {
    keyVault: keyVaultNamespace,
    target: targetName,
    rewrappedFrom,
    rewrapped: rewrappedKeys.length,
    alreadyAtTarget: before.length - pending.length,
    total: after.length,
    verified: after.length - unverified.length,
    unverified,
  };
  await audit(deps, {
    ...event,
    eventId: transitionEventId('keys.rotated', request.runId),
    action: 'keys.rotated',
    outcome: unverified.length === 0 ? 'success' : 'failure',
    ...(unverified.length === 0 ? {} : { reason: 'keys_not_verified' }),
    changes: [
      { field: 'masterKey', before: summarize(rewrappedFrom), after: auditValue(targetName) },
      { field: 'dataKeys.rewrapped', before: null, after: String(rewrappedKeys.length) },
      { field: 'dataKeys.verified', before: null, after: `${report.verified}/${report.total}` },
    ],
    occurredAt: new Date().toISOString(),
  });
  return report;
}

/** What `keys rotate` prints: counts, then each key that did not verify (ids and alt names only). */
export function formatRotationReport(report: KeyRotationReport): string {
  const from = Object.entries(report.rewrappedFrom)
    .map(([key, n]) => `${n} from ${key}`)
    .join(', ');
  const lines = [
    `key vault ${report.keyVault}: ${report.total} data keys; master key ${report.target}`,
    `rewrapped: ${report.rewrapped}${from ? ` (${from})` : ''}; already under the master key: ${report.alreadyAtTarget}`,
    `verified: ${report.verified}/${report.total}`,
    ...report.unverified.map(
      (key) =>
        `NOT VERIFIED ${key.keyId}${key.keyAltNames.length ? ` (${key.keyAltNames.join(', ')})` : ''}: ${key.problem}`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
