import { Schema, type Connection, type Model } from 'mongoose';

/**
 * A healthcare organization. `payment_info` is the field the product was
 * specified with; its secrets are stored as ciphertext (BSON binary subtype 6)
 * under the company's own data key and come back decrypted on read.
 */
export interface PaymentInfo {
  version: 1;
  gateway: 'stripe';
  credentials: {
    /** Encrypted (random) on write; a plaintext string on read. */
    secretKey?: unknown;
  };
}

export interface CompanyRecord {
  _id: string;
  name: string;
  payment_info?: PaymentInfo;
  createdAt: Date;
  updatedAt: Date;
}

const paymentInfoSchema = new Schema<PaymentInfo>(
  {
    version: { type: Number, required: true, default: 1 },
    gateway: { type: String, required: true, enum: ['stripe'], default: 'stripe' },
    credentials: {
      // Mixed: mongoose must pass the driver's encrypted Binary through untouched.
      secretKey: { type: Schema.Types.Mixed },
    },
  },
  { _id: false },
);

const companySchema = new Schema<CompanyRecord>(
  {
    _id: { type: String, required: true },
    name: { type: String, required: true, trim: true, maxlength: 200 },
    payment_info: { type: paymentInfoSchema },
  },
  { timestamps: true, versionKey: false, collection: 'companies' },
);

export type CompanyModel = Model<CompanyRecord>;

export function createCompanyModel(connection: Connection): CompanyModel {
  return connection.model<CompanyRecord>('Company', companySchema);
}
