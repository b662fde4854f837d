import { Schema, type Connection, type Model } from 'mongoose';

export const TEST_CLOCK_STATUSES = ['ready', 'advancing'] as const;
export type TestClockStatus = (typeof TEST_CLOCK_STATUSES)[number];

/**
 * Frozen time for testing subscriptions, like Stripe's test clocks: subscriptions created on a clock see its time,
 * and advancing it runs everything due up to the new time. Never in production.
 */
export interface TestClockRecord {
  /** `clock_` and a ULID. */
  _id: string;
  companyId: string;
  frozenTime: Date;
  status: TestClockStatus;
  /**
   * While advancing: the time of what is being run now. An advance runs what became due in time order, each at its own
   * time (a decline's retries count from when it was declined, not from the end of the jump), as Stripe's do.
   */
  processingTime?: Date;
  createdAt: Date;
  updatedAt: Date;
}

const testClockSchema = new Schema<TestClockRecord>(
  {
    _id: { type: String, required: true },
    companyId: { type: String, required: true },
    frozenTime: { type: Date, required: true },
    status: { type: String, required: true, enum: TEST_CLOCK_STATUSES },
    processingTime: { type: Date },
  },
  { timestamps: true, versionKey: false, collection: 'test_clocks' },
);

export type TestClockModel = Model<TestClockRecord>;

export function createTestClockModel(connection: Connection): TestClockModel {
  return connection.model<TestClockRecord>('TestClock', testClockSchema);
}
