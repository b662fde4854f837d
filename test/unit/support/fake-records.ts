import type { PaymentRecord } from '../../../models/payment.model';
import type { RefundRecord } from '../../../models/refund.model';

type Condition = unknown;
type Filter = Record<string, Condition>;
type Update = { $set?: Record<string, unknown>; $unset?: Record<string, unknown>; $inc?: Record<string, number> };

function matches(doc: Record<string, unknown>, filter: Filter): boolean {
  return Object.entries(filter).every(([field, condition]) => {
    const value = doc[field];
    if (condition && typeof condition === 'object' && !(condition instanceof Date)) {
      if ('$in' in condition) return (condition as { $in: unknown[] }).$in.includes(value);
      if ('$exists' in condition) return (value !== undefined) === (condition as { $exists: boolean }).$exists;
    }
    return value === condition;
  });
}

function applyUpdate(doc: Record<string, unknown>, update: Update): void {
  Object.assign(doc, update.$set ?? {});
  for (const field of Object.keys(update.$unset ?? {})) delete doc[field];
  for (const [field, by] of Object.entries(update.$inc ?? {})) doc[field] = ((doc[field] as number) ?? 0) + by;
  doc.updatedAt = new Date();
}

const lean = <T>(value: T) => ({ lean: () => Promise.resolve(value === undefined ? null : structuredClone(value)) });

/**
 * The few mongoose calls the refund use cases make (`findById`, `findOne`,
 * `findOneAndUpdate`, `updateOne`, `create`, and the driver's `collection.findOne`
 * the payment configuration is read with), on documents kept in memory, with
 * the conditions they use (equality, `$in`, `$exists`) honoured, so a
 * conditional write that would lose a race loses it here too.
 */
export class FakeCollection<T extends { _id: string }> {
  readonly docs = new Map<string, T>();
  /** Runs before each conditional update: lets a test change the record under the writer (a racing webhook). */
  beforeUpdate?: (collection: FakeCollection<T>) => void;

  constructor(docs: readonly T[] = []) {
    for (const doc of docs) this.docs.set(doc._id, structuredClone(doc));
  }

  get(id: string): T | undefined {
    return this.docs.get(id);
  }

  private first(filter: Filter): T | undefined {
    return [...this.docs.values()].find((doc) => matches(doc as Record<string, unknown>, filter));
  }

  findById(id: string) {
    return lean(this.docs.get(id));
  }

  /** The driver's collection: its `findOne` answers with the whole document (a projection is not applied). */
  get collection() {
    return { findOne: (filter: Filter) => lean(this.first(filter)).lean() };
  }

  findOne(filter: Filter) {
    return lean(this.first(filter));
  }

  findOneAndUpdate(filter: Filter, update: Update) {
    this.beforeUpdate?.(this);
    const doc = this.first(filter);
    if (doc) applyUpdate(doc as Record<string, unknown>, update);
    return lean(doc);
  }

  updateOne(filter: Filter, update: Update): Promise<{ modifiedCount: number }> {
    const doc = this.first(filter);
    if (doc) applyUpdate(doc as Record<string, unknown>, update);
    return Promise.resolve({ modifiedCount: doc ? 1 : 0 });
  }

  create(doc: T) {
    if (this.docs.has(doc._id))
      return Promise.reject(Object.assign(new Error('E11000 duplicate key'), { code: 11000 }));
    const stored = { createdAt: new Date(), updatedAt: new Date(), ...structuredClone(doc) };
    this.docs.set(doc._id, stored);
    return Promise.resolve({ toObject: () => structuredClone(stored) });
  }
}

export const COMPANY_ID = 'co_unit';
export const PAYMENT_ID = 'pay_01J0000000000000000000000A';
export const REFUND_ID = 'ref_01J0000000000000000000000A';

export function aPayment(overrides: Partial<PaymentRecord> = {}): PaymentRecord {
  return {
    _id: PAYMENT_ID,
    companyId: COMPANY_ID,
    idempotencyKey: 'key-payment',
    requestHash: 'hash-payment',
    amount: 10_000,
    currency: 'usd',
    customer: 'cus_unit',
    paymentMethod: 'pm_card_visa',
    status: 'succeeded',
    stripePaymentIntentId: 'pi_unit',
    requestedBy: { type: 'service', id: 'svc_unit' },
    requestId: 'req_unit',
    attempts: 1,
    createdAt: new Date('2026-01-01T00:00:00Z'),
    updatedAt: new Date('2026-01-01T00:00:00Z'),
    ...overrides,
  };
}

export function aRefund(overrides: Partial<RefundRecord> = {}): RefundRecord {
  return {
    _id: REFUND_ID,
    companyId: COMPANY_ID,
    paymentId: PAYMENT_ID,
    amount: 2_500,
    currency: 'usd',
    reason: 'requested_by_customer',
    status: 'queued',
    requestedBy: { type: 'service', id: 'svc_unit' },
    requestId: 'req_unit',
    idempotencyKey: 'key-refund',
    requestHash: 'hash-refund',
    attempts: 0,
    createdAt: new Date('2026-01-02T00:00:00Z'),
    updatedAt: new Date('2026-01-02T00:00:00Z'),
    ...overrides,
  };
}
