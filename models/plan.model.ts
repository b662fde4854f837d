import { Schema, type Connection, type Model } from 'mongoose';
import { INTERVAL_UNITS, type BillingInterval } from '../domain/billing-period';
import { PLAN_CATEGORIES, type PlanCategory } from '../domain/plan';

/** What a practice sells by the period: a membership or a payment plan. Generic words only, no clinical text. */
export interface PlanRecord {
  /** `plan_` and a ULID. */
  _id: string;
  companyId: string;
  /** The offices that may sell it; absent: every office of the company. */
  officeIds?: string[];
  category: PlanCategory;
  name: string;
  /** Per period, in minor units. */
  amount: number;
  currency: string;
  interval: BillingInterval;
  trialDays: number;
  idempotencyKey: string;
  requestHash: string;
  createdBy: { type: 'user' | 'service'; id: string };
  createdAt: Date;
  updatedAt: Date;
}

export const intervalSchema = new Schema<BillingInterval>(
  { unit: { type: String, required: true, enum: INTERVAL_UNITS }, count: { type: Number, required: true, min: 1 } },
  { _id: false },
);

const planSchema = new Schema<PlanRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeIds: { type: [String], default: undefined },
    category: { type: String, required: true, enum: PLAN_CATEGORIES },
    name: { type: String, required: true },
    amount: { type: Number, required: true, min: 1 },
    currency: { type: String, required: true },
    interval: { type: intervalSchema, required: true },
    trialDays: { type: Number, required: true, min: 0 },
    idempotencyKey: { type: String, required: true },
    requestHash: { type: String, required: true },
    createdBy: {
      type: new Schema(
        { type: { type: String, required: true }, id: { type: String, required: true } },
        { _id: false },
      ),
      required: true,
    },
  },
  { timestamps: true, versionKey: false, collection: 'plans' },
);
planSchema.index({ companyId: 1, idempotencyKey: 1 }, { unique: true, name: 'company_idempotency_key' });

export type PlanModel = Model<PlanRecord>;

export function createPlanModel(connection: Connection): PlanModel {
  return connection.model<PlanRecord>('Plan', planSchema);
}
