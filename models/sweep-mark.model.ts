import { Schema, type Connection, type Model } from 'mongoose';

/**
 * How far a sweep that walks records by `updatedAt` has got, so each run reads only what changed since: one document
 * per sweep. Losing a write (two sweeps at once) only makes the next run read some records again; sweeps are
 * idempotent.
 */
export interface SweepMarkRecord {
  _id: string;
  upTo: Date;
}

const sweepMarkSchema = new Schema<SweepMarkRecord>(
  { _id: { type: String, required: true }, upTo: { type: Date, required: true } },
  { timestamps: true, versionKey: false, collection: 'sweep_marks' },
);

export type SweepMarkModel = Model<SweepMarkRecord>;

export function createSweepMarkModel(connection: Connection): SweepMarkModel {
  return connection.model<SweepMarkRecord>('SweepMark', sweepMarkSchema);
}
