import { Schema, type Connection, type Model } from 'mongoose';
import type { PaymentDispute } from './payment.model';

/**
 * One document per write of a payment's dispute, `<payment id>:<revision>`, holding what that write sets. Inserting it
 * under its unique id is how a Stripe event claims the next revision: two dispute events of one payment processed at
 * once (`created` and `closed` delivered together) cannot both write, even on a server that loses one of two
 * concurrent updates of one document (FerretDB). A write whose claimant stopped before making it is made by whoever
 * finds the claim next: it is the same write.
 */
export interface DisputeRevisionRecord {
  _id: string;
  paymentId: string;
  revision: number;
  dispute: PaymentDispute;
  claimedAt: Date;
}

const disputeRevisionSchema = new Schema<DisputeRevisionRecord>(
  {
    _id: { type: String, required: true },
    paymentId: { type: String, required: true },
    revision: { type: Number, required: true },
    dispute: { type: Schema.Types.Mixed, required: true },
    claimedAt: { type: Date, required: true },
  },
  { versionKey: false, collection: 'payment_dispute_revisions' },
);

export type DisputeRevisionModel = Model<DisputeRevisionRecord>;

export const disputeRevisionId = (paymentId: string, revision: number) => `${paymentId}:${revision}`;

export function createDisputeRevisionModel(connection: Connection): DisputeRevisionModel {
  return connection.model<DisputeRevisionRecord>('DisputeRevision', disputeRevisionSchema);
}
