import { generateKeyPairSync } from 'node:crypto';
import fs, { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAnchorPublicKey, loadAnchorSigner } from '../../models/anchor-key';

/** The api verifies audit anchors; with the public-key setting it never reads (or creates) the signing key. */
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'hb-anchor-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('verifies with the public key file alone: the signing key is neither read nor created', () => {
  const signer = loadAnchorSigner(join(dir, 'signer.pem'), true);
  const publicKeyFile = join(dir, 'anchor-public.pem');
  writeFileSync(publicKeyFile, signer.publicKey.export({ type: 'spki', format: 'pem' }));
  const absentSigningKey = join(dir, 'api-host', 'anchor.pem');

  const key = loadAnchorPublicKey({ anchorKeyFile: absentSigningKey, anchorPublicKeyFile: publicKeyFile }, true);
  expect(key.export({ type: 'spki', format: 'der' })).toEqual(signer.publicKey.export({ type: 'spki', format: 'der' }));
  expect(existsSync(absentSigningKey)).toBe(false);
});

it('refuses, in production, to derive the verifying key from the signing key', () => {
  const anchorKeyFile = join(dir, 'anchor.pem');
  loadAnchorSigner(anchorKeyFile, true);
  expect(() => loadAnchorPublicKey({ anchorKeyFile }, true)).toThrow(/AUDIT_ANCHOR_PUBLIC_KEY_FILE/);
  // Development keeps working from the signing key alone.
  expect(loadAnchorPublicKey({ anchorKeyFile }, false).asymmetricKeyType).toBe('ed25519');
});

it('refuses a public key that is not Ed25519', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicKeyFile = join(dir, 'p256.pem');
  writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  expect(() =>
    loadAnchorPublicKey({ anchorKeyFile: join(dir, 'x.pem'), anchorPublicKeyFile: publicKeyFile }, true),
  ).toThrow(/must hold an Ed25519 public key/);
});

it('two processes creating the key at once: the second never reads it half-written, both sign with one key', () => {
  // The race three worker processes started together hit: while the first writes the new key, the second finds
  // the file and reads it. The write is cut in two here and the second process's load runs in between.
  const anchorKeyFile = join(dir, 'anchor.pem');
  const write = fs.writeFileSync;
  let concurrent: ReturnType<typeof loadAnchorSigner> | undefined;
  const spy = jest.spyOn(fs, 'writeFileSync').mockImplementation((file, data, options) => {
    if (concurrent !== undefined || typeof data !== 'string') return write(file, data, options);
    write(file, data.slice(0, data.length / 2), options);
    spy.mockRestore();
    concurrent = loadAnchorSigner(anchorKeyFile, true);
    fs.appendFileSync(file, data.slice(data.length / 2));
  });
  try {
    const first = loadAnchorSigner(anchorKeyFile, true);
    expect(concurrent?.keyId).toBeDefined();
    expect(first.keyId).toBe(concurrent?.keyId);
    expect(loadAnchorSigner(anchorKeyFile, false).keyId).toBe(first.keyId);
    expect(readdirSync(dir)).toEqual(['anchor.pem']);
  } finally {
    spy.mockRestore();
  }
});
