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

const driverCollections = new WeakMap<object, Collection<Document>>();

/**
 * A model's collection on the model's own client (its reads decrypt as the model's do), typed by its stored record:
 * driver commands for a hot path's writes, without the query object, the casting and the walk of the schema that
 * mongoose makes per command. Nothing is cast or defaulted and no middleware runs, so it serves only models without
 * write hooks (no serialized writes, no document tokens); the caller stamps `updatedAt` (`stamped`) where the schema
 * keeps timestamps, and passes `ignoreUndefined` where a value may be left undefined, as mongoose drops those.
 */
export function driverCollection<TRecord extends Document>(model: {
  db: Connection;
  collection: { collectionName: string };
}): Collection<TRecord> {
  let collection = driverCollections.get(model);
  if (!collection) {
    const db = model.db.db;
    if (!db) throw new Error(`${model.collection.collectionName}: the connection is not open`);
    collection = db.collection(model.collection.collectionName);
    driverCollections.set(model, collection);
  }
  return collection as unknown as Collection<TRecord>;
}

/** An update with `updatedAt` set to now, as a schema with timestamps has mongoose do. */
export function stamped<TUpdate extends { $set?: Document }>(update: TUpdate): TUpdate {
  return { ...update, $set: { ...update.$set, updatedAt: new Date() } };
}
