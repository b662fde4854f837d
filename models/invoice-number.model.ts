import { Schema, type Connection, type Model } from 'mongoose';
import type { DocumentKind } from '../domain/invoice';
import { numberingKey } from '../domain/invoice-number';
import { SequencedAppender, type SequenceHead } from './sequenced-append';

/**
 * A company's invoice (or credit note) numbers: one entry per numbered document, at the next place of the company's
 * sequence for its kind, inserted under a unique (key, sequence) index and the document's id as `_id` (a sequenced
 * append, models/sequenced-append.ts). So concurrent finalizations in any number of processes get 1, 2, 3… with no
 * gap and no duplicate, and a document finalized again (a retry, the sweep) finds the number it already has.
 */
export interface InvoiceNumberRecord {
  /** The numbered document's id. */
  _id: string;
  /** `<companyId>|<kind>`. */
  key: string;
  sequence: number;
  createdAt: Date;
}

const invoiceNumberSchema = new Schema<InvoiceNumberRecord>(
  {
    _id: { type: String, required: true },
    key: { type: String, required: true },
    sequence: { type: Number, required: true, min: 1 },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false, collection: 'invoice_numbers' },
);
invoiceNumberSchema.index({ key: 1, sequence: 1 }, { unique: true, name: 'key_sequence' });

export type InvoiceNumberModel = Model<InvoiceNumberRecord>;

export function createInvoiceNumberModel(connection: Connection): InvoiceNumberModel {
  return connection.model<InvoiceNumberRecord>('InvoiceNumber', invoiceNumberSchema);
}

/** Every round lost its race: transient (the caller's job retries). */
export class InvoiceNumberingBusyError extends Error {
  readonly code = 'invoice_numbering_busy';
  constructor(key: string) {
    super(`invoice numbering of ${key} stayed busy`);
    this.name = 'InvoiceNumberingBusyError';
  }
}

/** One per process (it keeps the last head it wrote per sequence, and appends to one sequence at a time). */
export class InvoiceNumbering {
  private readonly appender: SequencedAppender<SequenceHead>;

  constructor(
    private readonly numbers: InvoiceNumberModel,
    options: { maxAttempts?: number; cacheHeads?: boolean } = {},
  ) {
    this.appender = new SequencedAppender<SequenceHead>({
      readHead: async (key) => {
        const last = await numbers.find({ key }, { sequence: 1 }).sort({ sequence: -1 }).limit(1).lean();
        return { sequence: last[0]?.sequence ?? 0 };
      },
      // Writers in other processes take places too: each lost race costs a round.
      maxAttempts: options.maxAttempts ?? 500,
      jitterMs: 5,
      cacheHeads: options.cacheHeads ?? true,
      busy: (key) => new InvoiceNumberingBusyError(key),
    });
  }

  /** The document's place in its company's sequence: taken now, or the one it was given before. */
  assign(companyId: string, kind: DocumentKind, documentId: string): Promise<number> {
    const key = numberingKey(companyId, kind);
    const stored = async () => {
      const entry = await this.numbers.findById(documentId, { sequence: 1 }).lean();
      return entry ? { done: entry.sequence } : undefined;
    };
    return this.appender.append(key, {
      decide: (_head, sequence) => ({
        insert: { _id: documentId, key, sequence, createdAt: new Date() },
        result: sequence,
        head: { sequence },
      }),
      insert: (entry: InvoiceNumberRecord) => this.numbers.insertMany([entry], { lean: true }),
      alreadyStored: stored,
    });
  }
}
