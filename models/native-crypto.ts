import { randomBytes } from 'node:crypto';
import { BSON } from 'mongodb';
import * as addon from 'mongodb-client-encryption';

/** Who does the AES, HMAC and random bytes of field encryption. */
export type FieldCryptoProvider = 'libmongocrypt' | 'javascript';

type MongoCryptOptions = ConstructorParameters<typeof addon.MongoCrypt>[0];

/** `mongocrypt_ctx_state_t`: a context that needs nothing more (READY) and one finalized (DONE). */
const CONTEXT_READY: number = 5;
const CONTEXT_DONE: number = 6;

let chosen: FieldCryptoProvider | undefined;

/**
 * mongodb-client-encryption 6.0 (the newest that compiles against Debian's libmongocrypt 1.7.2) always hands
 * libmongocrypt JavaScript callbacks for its crypto: each AES block run, HMAC and IV is a call from C into JavaScript
 * and a new `Cipher` or `Hmac`, about half the CPU of an explicit encrypt or decrypt. A libmongocrypt built with
 * OpenSSL (Debian's is) does the same primitives itself when given no callbacks, as the addon's 6.1+ does on its own.
 *
 * So, once per process, before the first client with encryption is made: when a MongoCrypt made without the
 * callbacks can make a data key (random bytes, AES-256-CBC and HMAC-SHA-512 under a throwaway local master key), every
 * MongoCrypt the driver makes from then on is made without them. A libmongocrypt built without crypto fails that
 * probe ("hook not set for random"), and the driver's callbacks stay. Both produce the same standard ciphertext
 * (AEAD_AES_256_CBC_HMAC_SHA_512), so data written by either reads with the other.
 */
export function preferLibmongocryptCrypto(): FieldCryptoProvider {
  if (chosen) return chosen;
  const WithCallbacks = addon.MongoCrypt;
  const WithoutCallbacks = class extends WithCallbacks {
    constructor(options: MongoCryptOptions) {
      const { cryptoCallbacks: _unused, ...rest } = options;
      super(rest);
    }
  } as typeof addon.MongoCrypt;
  chosen = canMakeDataKey(WithoutCallbacks) ? 'libmongocrypt' : 'javascript';
  // The driver looks the class up on the addon's exports each time it makes a MongoCrypt.
  if (chosen === 'libmongocrypt') (addon as { MongoCrypt: typeof addon.MongoCrypt }).MongoCrypt = WithoutCallbacks;
  return chosen;
}

function canMakeDataKey(MongoCrypt: typeof addon.MongoCrypt): boolean {
  try {
    const crypt = new MongoCrypt({ kmsProviders: BSON.serialize({ local: { key: randomBytes(96) } }) });
    const context = crypt.makeDataKeyContext(BSON.serialize({ provider: 'local' }), {});
    if (context.state !== CONTEXT_READY) return false;
    return context.finalize().length > 0 && context.state === CONTEXT_DONE;
  } catch {
    return false;
  }
}
