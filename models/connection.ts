import mongoose, { type Connection } from 'mongoose';
import { KEY_VAULT_NAMESPACE, type KmsProviders } from './encryption';

/**
 * A mongoose connection whose reads decrypt encrypted fields automatically.
 * bypassAutoEncryption: writes are encrypted explicitly (automatic encryption
 * needs MongoDB Enterprise's query analysis), and no mongocryptd is spawned.
 */
export async function connectDatabase(uri: string, kmsProviders: KmsProviders): Promise<Connection> {
  const connection = mongoose.createConnection(uri, {
    autoEncryption: { keyVaultNamespace: KEY_VAULT_NAMESPACE, kmsProviders, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
    autoIndex: false,
  });
  return connection.asPromise();
}
