import mongoose, { type Connection } from 'mongoose';
import type { Collection, CSFLEKMSTlsOptions, Document, MongoClient } from 'mongodb';
import type { KmsProviders } from './encryption';
import { preferLibmongocryptCrypto } from './native-crypto';

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
  // Mongoose keeps `new Error().stack` of every query it runs, to say where a query run twice was first run: a stack
  // trace per read and write, about 2% of a renewal's CPU, for a programming error that tests catch anyway.
  mongoose.set('skipOriginalStackTraces', true);
  preferLibmongocryptCrypto();
  const connection = mongoose.createConnection(uri, {
    autoEncryption: { keyVaultNamespace, kmsProviders, tlsOptions, bypassAutoEncryption: true },
    serverSelectionTimeoutMS: 10_000,
    autoIndex: false,
  });
  return connection.asPromise();
}

/**
 * A model's collection on the driver client without automatic decryption, typed by its stored record: for hot paths
 * that read fields stored in the clear, or insert records already validated and encrypted in full, without mongoose's
 * query and document machinery or the decryption pass over every reply. Nothing is cast, defaulted or decrypted, so
 * the caller writes every field and reads only plaintext ones.
 */
export function plainCollection<TRecord extends Document>(
  database: { plainClient: MongoClient; connection: Connection },
  model: { collection: { collectionName: string } },
): Collection<TRecord> {
  return database.plainClient.db(database.connection.name).collection<TRecord>(model.collection.collectionName);
}
