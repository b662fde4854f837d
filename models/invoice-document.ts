import { createHash } from 'node:crypto';
import type { Binary, Collection, Db } from 'mongodb';
import { isDuplicateKeyError } from './errors';

/**
 * The bytes of rendered invoices and credit notes, apart from their records: the PDF, base64, encrypted (random) with
 * the company's data key. Read and written through a driver client without automatic decryption, so the ciphertext
 * can be hashed as stored and checked before anything is decrypted (like the audit chain's hashes, checkable without
 * keys). Crypto-shredding the company leaves the ciphertext unreadable like the rest of its data.
 */
export interface InvoiceDocumentEntry {
  /** The invoice's (or credit note's) id. */
  _id: string;
  companyId: string;
  /** BSON binary subtype 6: the encrypted base64 of the PDF. */
  ciphertext: Binary;
  /**
   * SHA-256 (hex) and size of the PDF itself, stored in the same insert as its bytes: a render that finds an entry
   * already there (a worker killed after storing it, before its record said so) records these, never the hash of its
   * own render, whose inputs (payer profile, PHI level, letterhead) may have changed since. Absent on older entries.
   */
  sha256?: string;
  size?: number;
  createdAt: Date;
}

/**
 * Where a document's bytes are stored: the invoice's id for its first document; a later version (an uncollectible
 * invoice paid later shows its new status) under `<id>~v<n>`. Every version stays, none is overwritten.
 */
export function documentKey(invoice: { _id: string; documentVersion?: number }): string {
  const version = invoice.documentVersion ?? 1;
  return version > 1 ? `${invoice._id}~v${version}` : invoice._id;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** The hash of the ciphertext as stored (the whole subtype-6 payload). */
export function storedHashOf(ciphertext: Binary): string {
  return sha256Hex(ciphertext.buffer);
}

export class InvoiceDocumentStore {
  private readonly entries: Collection<InvoiceDocumentEntry>;

  constructor(db: Db) {
    this.entries = db.collection<InvoiceDocumentEntry>('invoice_documents');
  }

  /** Stores a document once: a second render (a retry) finds the first one's, which its record then names. */
  async put(entry: InvoiceDocumentEntry): Promise<{ entry: InvoiceDocumentEntry; created: boolean }> {
    try {
      await this.entries.insertOne(entry);
      return { entry, created: true };
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error;
      const stored = await this.entries.findOne({ _id: entry._id });
      if (!stored) throw error;
      return { entry: stored, created: false };
    }
  }

  get(id: string, companyId: string): Promise<InvoiceDocumentEntry | null> {
    return this.entries.findOne({ _id: id, companyId });
  }
}
