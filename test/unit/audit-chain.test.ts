import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  anchorSignatureValid,
  ChainVerifier,
  eventHash,
  GENESIS,
  GENESIS_HASH,
  signAnchor,
  type AnchorStatement,
  type ChainStart,
  type NormalizedEvent,
  type StoredLink,
} from '../../domain/audit-chain';

const COMPANY = 'co_chain_unit';

/** An event body shaped like the stored form: nested objects, an array, a date string, ciphertext as base64. */
function eventBody(sequence: number, prevHash: string): NormalizedEvent {
  return {
    _id: `evt-unit-${sequence}`,
    companyId: COMPANY,
    sequence,
    occurredAt: new Date(Date.UTC(2025, 0, 1, 12, 0, sequence)).toISOString(),
    action: 'payment.requested',
    outcome: 'success',
    severity: 'info',
    actor: { type: 'user', id: `user_${sequence % 3}`, roles: ['billing_clerk', 'office_manager'] },
    resource: { type: 'payment', id: `pay_${sequence}` },
    request: {
      requestId: `req_${sequence}`,
      sourceIp: { $binary: Buffer.from([1, 2, sequence]).toString('base64'), subType: 6 },
    },
    prevHash,
  };
}

/** A valid chain of `length` links, hashed exactly as the trail hashes stored events. */
function buildChain(length: number, start: ChainStart = GENESIS): StoredLink[] {
  const links: StoredLink[] = [];
  let prev = start;
  for (let sequence = start.sequence + 1; sequence <= start.sequence + length; sequence += 1) {
    const body = eventBody(sequence, prev.hash);
    const hash = eventHash(prev.hash, body);
    links.push({ sequence, prevHash: prev.hash, hash, body });
    prev = { sequence, hash };
  }
  return links;
}

function walk(links: StoredLink[], start?: ChainStart): ChainVerifier {
  const verifier = new ChainVerifier(start);
  for (const link of links) if (!verifier.next(link)) break;
  return verifier;
}

function at(links: StoredLink[], sequence: number): StoredLink {
  const link = links.find((l) => l.sequence === sequence);
  if (!link) throw new Error(`no link ${sequence}`);
  return link;
}

/** Reverses key order at every level, so only the canonicalisation can make the hash come out the same. */
function reverseKeys(value: NormalizedEvent[string]): NormalizedEvent[string] {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.keys(value)
        .reverse()
        .map((key) => [key, reverseKeys(value[key] as NormalizedEvent[string])]),
    );
  }
  return value;
}

describe('eventHash', () => {
  it('is SHA-256 over the previous hash followed by the RFC 8785 canonical JSON of the event', () => {
    const expected = createHash('sha256')
      .update(GENESIS_HASH)
      .update('{"a":"x","b":1,"c":{"d":[true,null]}}')
      .digest('hex');
    expect(eventHash(GENESIS_HASH, { c: { d: [true, null] }, b: 1, a: 'x' })).toBe(expected);
  });

  it('does not depend on key order, at any depth', () => {
    const body = eventBody(3, GENESIS_HASH);
    const reordered = reverseKeys(body) as NormalizedEvent;
    expect(Object.keys(reordered)[0]).toBe('prevHash');
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(body));
    expect(eventHash(GENESIS_HASH, reordered)).toBe(eventHash(GENESIS_HASH, body));
  });

  it('changes with any field, with the ciphertext, and with the previous hash', () => {
    const body = eventBody(3, GENESIS_HASH);
    const hash = eventHash(GENESIS_HASH, body);
    expect(eventHash(GENESIS_HASH, { ...body, outcome: 'failure' })).not.toBe(hash);
    expect(
      eventHash(GENESIS_HASH, { ...body, request: { requestId: 'req_3', sourceIp: { $binary: 'AQIE', subType: 6 } } }),
    ).not.toBe(hash);
    expect(eventHash('f'.repeat(64), body)).not.toBe(hash);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('ChainVerifier', () => {
  it('accepts a valid chain and ends at its head', () => {
    const links = buildChain(12);
    const verifier = walk(links);
    expect(verifier.broken).toBeUndefined();
    expect(verifier.checked).toBe(12);
    expect(verifier.head).toEqual({ sequence: 12, hash: at(links, 12).hash });
  });

  it('starts at the genesis when there is nothing to check', () => {
    const verifier = walk([]);
    expect(verifier.head).toEqual({ sequence: 0, hash: GENESIS_HASH });
    expect(verifier.checked).toBe(0);
  });

  it('verifies from a checkpoint, and refuses the same links from the genesis', () => {
    const links = buildChain(10);
    const rest = links.slice(4);
    const fromCheckpoint = walk(rest, { sequence: 4, hash: at(links, 4).hash });
    expect(fromCheckpoint.broken).toBeUndefined();
    expect(fromCheckpoint.checked).toBe(6);
    expect(walk(rest).broken).toMatchObject({ sequence: 1, problem: 'sequence_gap', expected: '1', found: '5' });
  });

  it('reports a changed field as hash_mismatch at that event', () => {
    const links = buildChain(12);
    const seven = at(links, 7);
    seven.body = { ...seven.body, outcome: 'failure' };
    const verifier = walk(links);
    expect(verifier.broken).toEqual({
      sequence: 7,
      problem: 'hash_mismatch',
      expected: eventHash(seven.prevHash, seven.body),
      found: seven.hash,
    });
    expect(verifier.checked).toBe(6);
    expect(verifier.head.sequence).toBe(6);
  });

  it('reports a changed field whose own hash was recomputed at the next link (prev_hash_mismatch)', () => {
    const links = buildChain(12);
    const seven = at(links, 7);
    seven.body = { ...seven.body, outcome: 'failure' };
    seven.hash = eventHash(seven.prevHash, seven.body);
    expect(walk(links).broken).toMatchObject({ sequence: 8, problem: 'prev_hash_mismatch', expected: seven.hash });
  });

  it('reports a missing link as sequence_gap where it should have been', () => {
    const links = buildChain(12).filter((l) => l.sequence !== 7);
    expect(walk(links).broken).toEqual({ sequence: 7, problem: 'sequence_gap', expected: '7', found: '8' });
  });

  it('reports two links in swapped order at the first of them', () => {
    const links = buildChain(12);
    const swapped = [...links.slice(0, 4), links[5]!, links[4]!, ...links.slice(6)];
    expect(walk(swapped).broken).toEqual({ sequence: 5, problem: 'sequence_gap', expected: '5', found: '6' });
  });

  it('reports two events whose sequence numbers were swapped at the first of them', () => {
    const links = buildChain(12);
    const five = at(links, 5);
    const six = at(links, 6);
    const relabelled = [...links.slice(0, 4), { ...six, sequence: 5 }, { ...five, sequence: 6 }, ...links.slice(6)];
    expect(walk(relabelled).broken).toEqual({
      sequence: 5,
      problem: 'prev_hash_mismatch',
      expected: at(links, 4).hash,
      found: five.hash,
    });
  });

  it('reports a link that points at the wrong previous hash, even when its own hash is consistent', () => {
    const links = buildChain(12);
    const seven = at(links, 7);
    const wrongPrev = at(links, 5).hash;
    seven.prevHash = wrongPrev;
    seven.body = { ...seven.body, prevHash: wrongPrev };
    seven.hash = eventHash(wrongPrev, seven.body);
    expect(walk(links).broken).toEqual({
      sequence: 7,
      problem: 'prev_hash_mismatch',
      expected: at(links, 6).hash,
      found: wrongPrev,
    });
  });

  it('reports the first break only and checks nothing after it', () => {
    const links = buildChain(12);
    at(links, 3).body = { ...at(links, 3).body, severity: 'high' };
    at(links, 9).body = { ...at(links, 9).body, severity: 'high' };
    const verifier = new ChainVerifier();
    const results = links.map((link) => verifier.next(link));
    expect(results).toEqual([true, true, ...Array<boolean>(10).fill(false)]);
    expect(verifier.broken).toMatchObject({ sequence: 3, problem: 'hash_mismatch' });
    expect(verifier.checked).toBe(2);
  });
});

describe('anchor signatures (Ed25519)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const statement: AnchorStatement = {
    companyId: COMPANY,
    sequence: 20,
    hash: buildChain(1)[0]!.hash,
    anchoredAt: '2025-06-01T00:00:00.000Z',
  };

  it('verifies a statement signed with the anchor key, whatever the key order of the statement', () => {
    const signature = signAnchor(statement, privateKey);
    expect(anchorSignatureValid(statement, signature, publicKey)).toBe(true);
    const reordered: AnchorStatement = {
      anchoredAt: statement.anchoredAt,
      hash: statement.hash,
      sequence: statement.sequence,
      companyId: statement.companyId,
    };
    expect(anchorSignatureValid(reordered, signature, publicKey)).toBe(true);
  });

  it.each([
    ['sequence', { sequence: 21 }],
    ['hash', { hash: 'a'.repeat(64) }],
    ['companyId', { companyId: 'co_other' }],
    ['anchoredAt', { anchoredAt: '2025-06-01T00:00:00.001Z' }],
  ])('refuses the signature once the statement’s %s is modified', (_field, change) => {
    const signature = signAnchor(statement, privateKey);
    expect(anchorSignatureValid({ ...statement, ...change }, signature, publicKey)).toBe(false);
  });

  it('refuses a signature made with another Ed25519 key', () => {
    const other = generateKeyPairSync('ed25519');
    expect(anchorSignatureValid(statement, signAnchor(statement, other.privateKey), publicKey)).toBe(false);
    expect(anchorSignatureValid(statement, signAnchor(statement, privateKey), other.publicKey)).toBe(false);
  });

  it('refuses a mangled or empty signature without throwing', () => {
    const signature = Buffer.from(signAnchor(statement, privateKey), 'base64');
    signature[0] = (signature[0] ?? 0) ^ 0x01;
    expect(anchorSignatureValid(statement, signature.toString('base64'), publicKey)).toBe(false);
    expect(anchorSignatureValid(statement, '', publicKey)).toBe(false);
    expect(anchorSignatureValid(statement, 'not base64 at all!', publicKey)).toBe(false);
  });
});
