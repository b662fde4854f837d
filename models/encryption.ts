import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  ClientEncryption,
  type Binary,
  type CSFLEKMSTlsOptions,
  type Collection,
  type Document,
  type MongoClient,
} from 'mongodb';
import type { KmsConfig } from '../platform/config';
import { isDuplicateKeyError } from './errors';
import { preferLibmongocryptCrypto, type FieldCryptoProvider } from './native-crypto';

const LOCAL_MASTER_KEY_BYTES = 96;

// Random for everything by default; deterministic only where a field must be found by equality.
export const ALGORITHMS = {
  random: 'AEAD_AES_256_CBC_HMAC_SHA_512-Random',
  deterministic: 'AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic',
} as const;
export type EncryptionAlgorithm = keyof typeof ALGORITHMS;

export type KmsProviders = ConstructorParameters<typeof ClientEncryption>[1]['kmsProviders'];
export type MasterKey = Parameters<ClientEncryption['createDataKey']>[1] extends infer O
  ? O extends { masterKey?: infer M }
    ? M
    : never
  : never;

/** The key vault collection of a `database.collection` namespace (KEY_VAULT_NAMESPACE). */
export function keyVaultCollection<T extends Document = Document>(
  client: MongoClient,
  namespace: string,
): Collection<T> {
  const [db = '', collection = ''] = namespace.split('.');
  return client.db(db).collection<T>(collection);
}

export function companyKeyAltName(companyId: string): string {
  return `company-${companyId}`;
}

/**
 * Reads the local master key; in development creates it on first use so the
 * quick start needs no setup. Production refuses the default path (see config).
 */
export function loadLocalMasterKey(keyFile: string, createIfMissing: boolean): Buffer {
  if (!existsSync(keyFile)) {
    if (!createIfMissing) throw new Error(`local KMS master key file ${keyFile} does not exist`);
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    writeFileSync(keyFile, randomBytes(LOCAL_MASTER_KEY_BYTES), { mode: 0o600, flag: 'wx' });
    chmodSync(keyFile, 0o600);
  }
  const key = readFileSync(keyFile);
  if (key.length !== LOCAL_MASTER_KEY_BYTES) {
    throw new Error(
      `local KMS master key file ${keyFile} must hold exactly ${LOCAL_MASTER_KEY_BYTES} bytes, found ${key.length}`,
    );
  }
  return key;
}

/**
 * The local master key in use: KMS_PROVIDER=local's (created on first use outside production), or one kept
 * only to unwrap data keys from before a move to a KMS (never created).
 */
export function localMasterKeyFor(kms: KmsConfig, createIfMissing: boolean): Buffer | undefined {
  if (kms.provider === 'local') return loadLocalMasterKey(kms.keyFile, createIfMissing);
  return kms.unwrapOnly.localKeyFile ? loadLocalMasterKey(kms.unwrapOnly.localKeyFile, false) : undefined;
}

/**
 * Credentials for every provider that may have wrapped a data key: KMS_PROVIDER's, plus (scope `all`) the
 * unwrap-only ones. Scope `target` is KMS_PROVIDER alone, to prove keys need nothing else.
 */
export function kmsProvidersFor(kms: KmsConfig, localKey?: Buffer, scope: 'all' | 'target' = 'all'): KmsProviders {
  const { localKeyFile, ...others } = scope === 'all' ? kms.unwrapOnly : {};
  return {
    ...others,
    ...(localKeyFile && localKey ? { local: { key: localKey } } : {}),
    ...targetKmsProvider(kms, localKey),
  };
}

/** Every remote provider trusts KMS_TLS_CA_FILE when set; KMIP also presents the client certificate. */
export function kmsTlsOptionsFor(kms: KmsConfig): CSFLEKMSTlsOptions {
  const ca = kms.tls.caFile ? { tlsCAFile: kms.tls.caFile } : {};
  const kmipCert = kms.tls.kmipCertificateKeyFile ? { tlsCertificateKeyFile: kms.tls.kmipCertificateKeyFile } : {};
  return { aws: ca, gcp: ca, azure: ca, kmip: { ...ca, ...kmipCert } };
}

function targetKmsProvider(kms: KmsConfig, localKey?: Buffer): KmsProviders {
  switch (kms.provider) {
    case 'local':
      if (!localKey) throw new Error('local KMS needs the master key');
      return { local: { key: localKey } };
    case 'aws':
      // Without explicit credentials the driver uses the AWS credential chain (instance role, env).
      return kms.accessKeyId && kms.secretAccessKey
        ? { aws: { accessKeyId: kms.accessKeyId, secretAccessKey: kms.secretAccessKey } }
        : { aws: {} };
    case 'gcp':
      return kms.email && kms.privateKey ? { gcp: { email: kms.email, privateKey: kms.privateKey } } : { gcp: {} };
    case 'azure':
      return kms.tenantId && kms.clientId && kms.clientSecret
        ? { azure: { tenantId: kms.tenantId, clientId: kms.clientId, clientSecret: kms.clientSecret } }
        : { azure: {} };
    case 'kmip':
      return { kmip: { endpoint: kms.endpoint } };
  }
}

export function masterKeyFor(kms: KmsConfig): MasterKey | undefined {
  switch (kms.provider) {
    case 'local':
      return undefined;
    case 'aws':
      return { region: kms.region, key: kms.keyArn, ...(kms.endpoint ? { endpoint: kms.endpoint } : {}) };
    case 'gcp':
      return { projectId: kms.projectId, location: kms.location, keyRing: kms.keyRing, keyName: kms.keyName };
    case 'azure':
      return { keyVaultEndpoint: kms.keyVaultEndpoint, keyName: kms.keyName };
    case 'kmip':
      return {};
  }
}

/**
 * Explicit client-side field encryption with one data key per company.
 * Reads decrypt automatically through the connection's autoEncryption
 * (bypassAutoEncryption), so this class only ever encrypts and manages keys.
 */
export class FieldEncryption {
  private readonly clientEncryption: ClientEncryption;
  private readonly knownKeys = new Set<string>();
  /** Who does the crypto primitives (models/native-crypto.ts): said in the api's and workers' start-up lines. */
  readonly cryptoProvider: FieldCryptoProvider;

  constructor(
    private readonly client: MongoClient,
    private readonly kms: KmsConfig,
    kmsProviders: KmsProviders,
    private readonly keyVaultNamespace: string,
    /** Whether a company is tombstoned (shredded): a key is never created for one (models/companies.ts). */
    private readonly isShredded?: (companyId: string) => Promise<boolean>,
  ) {
    this.cryptoProvider = preferLibmongocryptCrypto();
    this.clientEncryption = new ClientEncryption(client, {
      keyVaultNamespace,
      kmsProviders,
      tlsOptions: kmsTlsOptionsFor(kms),
    });
  }

  /** A unique index on key alt names makes concurrent creation of one company's key safe. */
  async ensureKeyVaultIndex(): Promise<void> {
    await keyVaultCollection(this.client, this.keyVaultNamespace).createIndex({ keyAltNames: 1 }, { unique: true });
  }

  async ensureCompanyKey(companyId: string): Promise<void> {
    const altName = companyKeyAltName(companyId);
    if (this.knownKeys.has(altName)) return;
    const existing = await this.clientEncryption.getKeyByAltName(altName);
    if (!existing) {
      // Shredding tombstones the company before it deletes the key: a write racing it (a render in flight) finds the
      // tombstone here and fails, instead of creating a new key that would make the company's data readable again.
      if (await this.isShredded?.(companyId)) throw new CompanyShreddedError(companyId);
      try {
        const masterKey = masterKeyFor(this.kms);
        await this.clientEncryption.createDataKey(this.kms.provider, {
          keyAltNames: [altName],
          ...(masterKey ? { masterKey } : {}),
        });
      } catch (error) {
        // Another process created it first: that key is the one to use.
        if (!isDuplicateKeyError(error)) throw error;
      }
    }
    this.knownKeys.add(altName);
  }

  /**
   * Crypto-shredding: deletes the company's data key, after which nothing
   * encrypted under it can ever be decrypted. Other processes may still hold
   * the key in libmongocrypt's cache for up to a minute.
   */
  async deleteCompanyKey(companyId: string): Promise<boolean> {
    const altName = companyKeyAltName(companyId);
    this.knownKeys.delete(altName);
    const key = await this.clientEncryption.getKeyByAltName(altName);
    if (!key) return false;
    await this.clientEncryption.deleteKey(key._id);
    return true;
  }

  async encrypt(companyId: string, value: string, algorithm: EncryptionAlgorithm = 'random'): Promise<Binary> {
    await this.ensureCompanyKey(companyId);
    return this.clientEncryption.encrypt(value, {
      keyAltName: companyKeyAltName(companyId),
      algorithm: ALGORITHMS[algorithm],
    });
  }

  /**
   * Decrypts a value read without automatic decryption (a document checked as stored first). Fails like a read does
   * when the company's key was destroyed (`isShreddedDataError`).
   */
  decrypt(value: Binary): Promise<unknown> {
    return this.clientEncryption.decrypt(value);
  }
}

/** Nothing can be encrypted for a crypto-shredded company: its key is gone and is never created again. */
export class CompanyShreddedError extends Error {
  override readonly name = 'CompanyShreddedError';
  constructor(readonly companyId: string) {
    super(`company ${companyId} was crypto-shredded: nothing is encrypted for it any more`);
  }
}

/** What reading a field encrypted under a deleted (shredded) data key fails with. */
export function isShreddedDataError(error: unknown): boolean {
  return (
    error instanceof Error &&
    error.name === 'MongoCryptError' &&
    /not all keys requested were satisfied/.test(error.message)
  );
}
