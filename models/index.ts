import type { Connection } from 'mongoose';
import type { AppConfig } from '../platform/config';
import { createAuditEventModel, type AuditEventModel } from './audit-event.model';
import { createCompanyModel, type CompanyModel } from './company.model';
import { connectDatabase } from './connection';
import { FieldEncryption, kmsProvidersFor, loadLocalMasterKey } from './encryption';
import { createPaymentModel, type PaymentModel } from './payment.model';

export interface Models {
  Company: CompanyModel;
  Payment: PaymentModel;
  AuditEvent: AuditEventModel;
}

export interface Database {
  connection: Connection;
  encryption: FieldEncryption;
  models: Models;
  close(): Promise<void>;
}

export function createModels(connection: Connection): Models {
  return {
    Company: createCompanyModel(connection),
    Payment: createPaymentModel(connection),
    AuditEvent: createAuditEventModel(connection),
  };
}

/** Connects, wires encryption and models, and makes sure indexes exist (idempotent). */
export async function openDatabase(
  config: Pick<AppConfig, 'mongodbUri' | 'keyVaultNamespace' | 'kms' | 'env'>,
): Promise<Database> {
  const localKey =
    config.kms.provider === 'local' ? loadLocalMasterKey(config.kms.keyFile, config.env !== 'production') : undefined;
  const kmsProviders = kmsProvidersFor(config.kms, localKey);
  const connection = await connectDatabase(config.mongodbUri, config.keyVaultNamespace, kmsProviders);
  const encryption = new FieldEncryption(connection.getClient(), config.kms, kmsProviders, config.keyVaultNamespace);
  const models = createModels(connection);
  await encryption.ensureKeyVaultIndex();
  await Promise.all(Object.values(models).map((model: Models[keyof Models]) => model.createIndexes()));
  return { connection, encryption, models, close: () => connection.close() };
}
