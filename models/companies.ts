import { ulid } from '../platform/ids';
import type { Compliance, PaymentMode } from '../domain/payment-config';
import type { Database } from './index';
import { recordAttestation, updatePaymentSettings } from './payment-config';
import { pendingAuditSet, type PendingAudit } from './pending-audit';

export interface NewCompany {
  id?: string;
  name: string;
  /** Stored encrypted under the company's own data key. */
  stripeSecretKey?: string;
  /** Stripe webhook signing secrets (whsec_…), stored encrypted. */
  webhookSigningSecrets?: string[];
  mode?: PaymentMode;
  /** Without an attestation the configuration cannot take payments. */
  compliance?: Compliance;
}

export function newCompanyId(): string {
  return `co_${ulid()}`;
}

/** Development and test attestation: the payment-processing exemption, attested by the tool that set it up. */
export function devAttestation(attestedBy: string): Compliance {
  return {
    status: 'exempt_1179',
    rationale: 'Payment processing only (HIPAA section 1179); the gateway receives amounts and opaque ids, no PHI.',
    attestedBy,
    attestedAt: new Date().toISOString(),
  };
}

/**
 * Creates a company (its data key first, so no secret is ever written in clear). Idempotent per id. What it stores
 * beyond the name (key, mode, attestation) is one write, which also stores `pending` (the audit events of the setup,
 * models/pending-audit.ts); without any of those, the name's write stores them.
 */
export async function createCompany(
  db: Pick<Database, 'encryption' | 'models'>,
  input: NewCompany,
  pending?: PendingAudit,
): Promise<string> {
  const id = input.id ?? newCompanyId();
  await db.encryption.ensureCompanyKey(id);
  const settings = Boolean(input.stripeSecretKey || input.webhookSigningSecrets || input.mode);
  const withName = !settings && !input.compliance ? pendingAuditSet(pending) : {};
  await db.models.Company.updateOne(
    { _id: id },
    { $setOnInsert: { name: input.name }, ...(Object.keys(withName).length > 0 ? { $set: withName } : {}) },
    { upsert: true },
  );
  if (settings) {
    await updatePaymentSettings(
      db,
      { companyId: id },
      {
        mode: input.mode ?? 'company',
        ...(input.stripeSecretKey ? { secretKey: input.stripeSecretKey } : {}),
        ...(input.webhookSigningSecrets ? { webhookSigningSecrets: input.webhookSigningSecrets } : {}),
        ...(input.compliance ? { compliance: input.compliance } : {}),
      },
      'setup',
      pending,
    );
  } else if (input.compliance) {
    await recordAttestation(db, { companyId: id }, input.compliance, pending);
  }
  return id;
}

/**
 * Destroys a company's data key (crypto-shredding): its secrets, sealed audit
 * fields and every other value encrypted under that key become unreadable for
 * good. Plain records (amounts, statuses, the audit chain's hashes) remain.
 */
export async function shredCompany(db: Pick<Database, 'encryption' | 'models'>, companyId: string): Promise<boolean> {
  // The tombstone first: from then on no key is created for the company (FieldEncryption), so a write racing the
  // deletion (a render in flight) cannot bring a key back. A repeat keeps the first shredding's time.
  await db.models.Company.updateOne(
    { _id: companyId, shreddedAt: { $exists: false } },
    { $set: { shreddedAt: new Date() } },
  );
  return db.encryption.deleteCompanyKey(companyId);
}
