import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { anchorKeyId, type AnchorSigner } from './audit-trail';

/**
 * The Ed25519 key that signs audit chain anchors. In development it is created
 * on first use (like the local KMS master key); production must provide one.
 */
export function loadAnchorSigner(keyFile: string, createIfMissing: boolean): AnchorSigner {
  if (!existsSync(keyFile)) {
    if (!createIfMissing) throw new Error(`audit anchor key file ${keyFile} does not exist`);
    mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    // Written aside, then linked into place: the key file appears whole or not at all. Written in place, another
    // process starting at the same moment read it half-written and failed (ERR_OSSL_UNSUPPORTED).
    const written = `${keyFile}.${randomUUID()}.tmp`;
    writeFileSync(written, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
    try {
      linkSync(written, keyFile);
    } catch (error) {
      // Another process created it at the same moment: use theirs.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      rmSync(written, { force: true });
    }
  }
  const privateKey = createPrivateKey(readFileSync(keyFile));
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${keyFile} must hold an Ed25519 private key`);
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: anchorKeyId(publicKey) };
}

/**
 * The key that verifies anchors, for a process that must not be able to sign them (the api): the public key file
 * when configured (`hipaa-billing audit public-key` prints it), else the one derived from the signing key, which
 * production refuses for the api.
 */
export function loadAnchorPublicKey(
  audit: { anchorKeyFile: string; anchorPublicKeyFile?: string },
  production: boolean,
): KeyObject {
  if (audit.anchorPublicKeyFile) {
    const publicKey = createPublicKey(readFileSync(audit.anchorPublicKeyFile));
    if (publicKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(`${audit.anchorPublicKeyFile} must hold an Ed25519 public key`);
    }
    return publicKey;
  }
  if (production) {
    throw new Error(
      'the api verifies audit anchors with AUDIT_ANCHOR_PUBLIC_KEY_FILE in production, never the signing key',
    );
  }
  return loadAnchorSigner(audit.anchorKeyFile, true).publicKey;
}
