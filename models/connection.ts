import mongoose, { type Connection } from 'mongoose';
import type { CSFLEKMSTlsOptions } from 'mongodb';
import type { KmsProviders } from './encryption';

/**
 * A mongoose connection whose reads decrypt encrypted fields automatically.
 * bypassAutoEncryption: writes are encrypted explicitly (automatic encryption
 * needs MongoDB Enterprise's query analysis), and no mongocryptd is spawned.
 */
export async function connectDatabase(
  uri: string,
  keyVaultNamespace: string,
  kmsProviders: KmsProviders,
  tlsOptions: CSFLEKMSTlsOptions = {},
): Promise<Connection> {
  const connection = mongoose.createConnection(uri, {
    autoEncryption: { keyVaultNamespace, kmsProviders, tlsOptions, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
    autoIndex: false,
  });
  return connection.asPromise();
}
