import { Schema, type Connection, type Model } from 'mongoose';
import { CUSTOMER_REF_PATTERN } from './saved-payment-method.model';

/**
 * A SetupIntent we created for a payer to save a card. `setup_intent.succeeded` applies only to a SetupIntent
 * recorded here, from the configuration that created it, in its mode; the office and payer come from this record,
 * never from the event's metadata (which whoever made the object wrote, and which never carries the office).
 */
export interface SetupIntentRecord {
  /** Stripe's seti_… id. */
  _id: string;
  companyId: string;
  officeId?: string;
  customerRef: string;
  /** The configuration whose key created it, named as its webhook endpoint is (`configurationId`). */
  configurationId: string;
  accountId?: string;
  livemode: boolean;
  createdAt: Date;
}

const setupIntentSchema = new Schema<SetupIntentRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    customerRef: { type: String, required: true, match: CUSTOMER_REF_PATTERN },
    configurationId: { type: String, required: true },
    accountId: { type: String },
    livemode: { type: Boolean, required: true },
  },
  { timestamps: { createdAt: true, updatedAt: false }, versionKey: false, collection: 'setup_intents' },
);

export type SetupIntentModel = Model<SetupIntentRecord>;

export function createSetupIntentModel(connection: Connection): SetupIntentModel {
  return connection.model<SetupIntentRecord>('SetupIntent', setupIntentSchema);
}
