import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';

/**
 * The audit trail of each company is a hash chain:
 *   hash(n) = SHA-256(hash(n-1) ‖ canonical JSON of event n as stored)
 * "As stored" includes ciphertext, so anyone can verify integrity without the
 * decryption keys. Canonical JSON is RFC 8785 (JCS), so the bytes do not depend
 * on key order or on the driver.
 */
export const GENESIS_HASH = '0'.repeat(64);

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** An event in storage form, normalised to JSON (dates as ISO strings, ciphertext as base64), without its hash. */
export type NormalizedEvent = { [key: string]: JsonValue };

export function eventHash(prevHash: string, event: NormalizedEvent): string {
  const canonical = canonicalize(event);
  if (canonical === undefined) throw new Error('event cannot be canonicalised');
  return createHash('sha256').update(prevHash).update(canonical).digest('hex');
}

/** Where verification starts: the genesis, or a checkpoint left by a retention purge. */
export interface ChainStart {
  sequence: number;
  hash: string;
}
export const GENESIS: ChainStart = { sequence: 0, hash: GENESIS_HASH };

export interface StoredLink {
  sequence: number;
  prevHash: string;
  hash: string;
  /** The event as stored, normalised, without `hash`. */
  body: NormalizedEvent;
}

export type ChainProblem =
  | 'sequence_gap'
  | 'prev_hash_mismatch'
  | 'hash_mismatch'
  | 'anchor_mismatch'
  | 'anchor_signature_invalid'
  | 'anchor_beyond_head';

export interface ChainBreak {
  sequence: number;
  problem: ChainProblem;
  expected: string;
  found: string;
}

/** Walks a chain in sequence order and reports the first broken link. */
export class ChainVerifier {
  private last: ChainStart;
  checked = 0;
  broken?: ChainBreak;

  constructor(start: ChainStart = GENESIS) {
    this.last = start;
  }

  get head(): ChainStart {
    return this.last;
  }

  /** Returns false once the chain is broken (further links are not checked). */
  next(link: StoredLink): boolean {
    if (this.broken) return false;
    const expectedSequence = this.last.sequence + 1;
    if (link.sequence !== expectedSequence) {
      return this.fail(expectedSequence, 'sequence_gap', String(expectedSequence), String(link.sequence));
    }
    if (link.prevHash !== this.last.hash) {
      return this.fail(link.sequence, 'prev_hash_mismatch', this.last.hash, link.prevHash);
    }
    const recomputed = eventHash(link.prevHash, link.body);
    if (recomputed !== link.hash) return this.fail(link.sequence, 'hash_mismatch', recomputed, link.hash);
    this.last = { sequence: link.sequence, hash: link.hash };
    this.checked += 1;
    return true;
  }

  private fail(sequence: number, problem: ChainProblem, expected: string, found: string): false {
    this.broken = { sequence, problem, expected, found };
    return false;
  }
}

/** A signed statement "the chain of this company had this hash at this sequence", stored apart from the chain. */
export interface AnchorStatement {
  companyId: string;
  sequence: number;
  hash: string;
  anchoredAt: string;
}

export function signAnchor(statement: AnchorStatement, privateKey: KeyObject): string {
  return sign(null, Buffer.from(canonicalize(statement) ?? ''), privateKey).toString('base64');
}

export function anchorSignatureValid(statement: AnchorStatement, signature: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(canonicalize(statement) ?? ''), publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
