import { ulid } from 'ulid';
import type { Database } from './index';

export interface NewCompany {
  id?: string;
  name: string;
  /** Stored encrypted under the company's own data key. */
  stripeSecretKey?: string;
}

export function newCompanyId(): string {
  return `co_${ulid()}`;
}

/** Creates a company (its data key first, so the secret is never written in clear). Idempotent per id. */
export async function createCompany(db: Pick<Database, 'encryption' | 'models'>, input: NewCompany): Promise<string> {
  const id = input.id ?? newCompanyId();
  await db.encryption.ensureCompanyKey(id);
  const payment_info = input.stripeSecretKey
    ? {
        version: 1 as const,
        gateway: 'stripe' as const,
        credentials: { secretKey: await db.encryption.encrypt(id, input.stripeSecretKey) },
      }
    : undefined;
  await db.models.Company.updateOne(
    { _id: id },
    { $setOnInsert: { name: input.name, ...(payment_info ? { payment_info } : {}) } },
    { upsert: true },
  );
  return id;
}
