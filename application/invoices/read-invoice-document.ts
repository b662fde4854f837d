import type { Binary } from 'mongodb';
import type { FieldEncryption } from '../../models/encryption';
import { isShreddedDataError } from '../../models/encryption';
import { documentKey, sha256Hex, storedHashOf, type InvoiceDocumentStore } from '../../models/invoice-document';
import type { InvoiceRecord } from '../../models/invoice.model';

export interface ReadDocumentDeps {
  documents: Pick<InvoiceDocumentStore, 'get'>;
  encryption: Pick<FieldEncryption, 'decrypt'>;
}

/**
 * A stored document's bytes, checked: `not_rendered` (nothing stored yet), `integrity_failed` (the stored ciphertext
 * is missing, does not hash to what was recorded, cannot be decrypted, or decrypts to a PDF with another hash).
 * A destroyed data key (crypto-shredding) is thrown as the driver's error, which reads as `data_shredded`.
 */
export type ReadDocumentOutcome =
  | { outcome: 'ok'; pdf: Buffer }
  | { outcome: 'not_rendered' }
  | { outcome: 'integrity_failed'; check: 'missing' | 'stored_hash' | 'decryption' | 'pdf_hash' };

export async function readInvoiceDocument(
  deps: ReadDocumentDeps,
  invoice: Pick<InvoiceRecord, '_id' | 'companyId' | 'document' | 'documentVersion'>,
): Promise<ReadDocumentOutcome> {
  const expected = invoice.document;
  if (!expected) return { outcome: 'not_rendered' };
  const entry = await deps.documents.get(documentKey(invoice), invoice.companyId);
  if (!entry) return { outcome: 'integrity_failed', check: 'missing' };
  // Checked as stored, before anything is decrypted.
  if (storedHashOf(entry.ciphertext as Binary) !== expected.storedSha256) {
    return { outcome: 'integrity_failed', check: 'stored_hash' };
  }
  let plaintext: unknown;
  try {
    plaintext = await deps.encryption.decrypt(entry.ciphertext);
  } catch (error) {
    // A destroyed key reads as shredded; an outage (key vault unreachable) is thrown to be retried.
    if (isShreddedDataError(error) || !(error instanceof Error) || error.name !== 'MongoCryptError') throw error;
    return { outcome: 'integrity_failed', check: 'decryption' };
  }
  const pdf = Buffer.from(String(plaintext), 'base64');
  if (sha256Hex(pdf) !== expected.sha256) return { outcome: 'integrity_failed', check: 'pdf_hash' };
  return { outcome: 'ok', pdf };
}
