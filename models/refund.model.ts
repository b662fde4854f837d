import { Schema, type Connection, type Model } from 'mongoose';
import { REFUND_REASONS, REFUND_STATUSES, type RefundReason, type RefundStatus } from '../domain/refund-status';
import type { Attention } from '../domain/gateway-account';
import { attentionSchema, requestedBySchema } from './payment.model';

export interface RefundFailure {
  /** Our reason code: Stripe's error code or failure_reason, or ours (gateway_not_attested, refund_exceeds_captured…). */
  code: string;
  message: string;
}

/** A refund of (part of) a succeeded payment. Amounts, codes and opaque ids only: nothing here is PHI. */
export interface RefundRecord {
  /** `ref_…`, derived from the company, the Idempotency-Key and the request (domain/refund-request.ts). */
  _id: string;
  companyId: string;
  officeId?: string;
  paymentId: string;
  amount: number;
  currency: string;
  reason: RefundReason;
  status: RefundStatus;
  stripeRefundId?: string;
  failure?: RefundFailure;
  /** Why it is `needs_attention`. */
  attention?: Attention;
  /** When the reconciliation sweep last asked the gateway about it. */
  reconciledAt?: Date;
  requestedBy: { type: 'user' | 'service'; id: string };
  requestId: string;
  /** Unique per company: a retried request finds the refund it already made. */
  idempotencyKey: string;
  requestHash: string;
  attempts: number;
  lastError?: string;
  /** The audit key of the Stripe event that last moved it: a retry after a crash recognises its own write. */
  changedBy?: string;
  completedAt?: Date;
  createdAt: Date;
  updatedAt: Date;
}

const refundSchema = new Schema<RefundRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    officeId: { type: String },
    paymentId: { type: String, required: true },
    amount: { type: Number, required: true, min: 1 },
    currency: { type: String, required: true },
    reason: { type: String, required: true, enum: REFUND_REASONS },
    status: { type: String, required: true, enum: REFUND_STATUSES },
    stripeRefundId: { type: String },
    failure: {
      type: new Schema<RefundFailure>(
        { code: { type: String, required: true }, message: { type: String, required: true } },
        { _id: false },
      ),
    },
    attention: { type: attentionSchema },
    reconciledAt: { type: Date },
    requestedBy: { type: requestedBySchema, required: true },
    requestId: { type: String, required: true },
    idempotencyKey: { type: String, required: true },
    requestHash: { type: String, required: true },
    attempts: { type: Number, required: true, default: 0 },
    lastError: { type: String },
    changedBy: { type: String },
    completedAt: { type: Date },
  },
  { timestamps: true, versionKey: false, collection: 'refunds' },
);
refundSchema.index({ companyId: 1, idempotencyKey: 1 }, { unique: true, name: 'company_idempotency_key' });
refundSchema.index({ paymentId: 1, createdAt: 1 }, { name: 'payment_created' });
// The outbox sweep looks for stale, unfinished refunds.
refundSchema.index({ status: 1, updatedAt: 1 }, { name: 'status_updated' });

export type RefundModel = Model<RefundRecord>;

export function createRefundModel(connection: Connection): RefundModel {
  return connection.model<RefundRecord>('Refund', refundSchema);
}
