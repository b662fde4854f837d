import { ulid } from 'ulid';
import { openDatabase, type Database } from '../../models';
import { DocumentWriteLeases, DocumentWriteUnavailableError } from '../../models/serialized-writes';
import { createTestContext, type TestContext } from '../support/harness';
import { insertDueSubscription } from '../support/records';

// The dev and test server (FerretDB) applies an update as a read, then a write of the whole document: two updates of
// one subscription at the same moment can revert each other. These tests write one subscription from two processes
// (two connections, as the api and a worker) at once and check that every update holds, as on MongoDB.
let ctx: TestContext;
let other: Database;
let companyId: string;

beforeAll(async () => {
  ctx = await createTestContext('serialized_writes');
  other = await openDatabase(ctx.config);
  companyId = `co_${ulid()}`;
}, 60_000);

afterAll(async () => {
  await other?.close();
  await ctx?.close();
});

/** An active subscription, due: written by the api and a renewal below. */
const activeSubscription = async () =>
  (await insertDueSubscription(ctx.db, { companyId, customerRef: 'cust_x' })).subscriptionId;

describe('updates of one subscription from two processes at once', () => {
  it('a cancel made while a renewal writes its next billing time stays canceled (30 races)', async () => {
    const ids = await Promise.all(Array.from({ length: 30 }, () => activeSubscription()));
    await Promise.all(
      ids.flatMap((id) => [
        // The api's cancel and a renewal's "billed next at the period's end", each conditional on `active`.
        ctx.db.models.Subscription.updateOne(
          { _id: id, status: 'active' },
          { $set: { status: 'canceled', canceledAt: new Date() }, $unset: { nextBillingAt: 1 } },
        ),
        other.models.Subscription.updateOne(
          { _id: id, status: 'active' },
          { $set: { nextBillingAt: new Date('2027-02-01T00:00:00Z') } },
        ),
      ]),
    );
    const after = await ctx.db.models.Subscription.find({ _id: { $in: ids } }, { status: 1, nextBillingAt: 1 }).lean();
    // In either order the cancel wins: after it the renewal's write matches nothing, before it the cancel clears it.
    expect(after.map((s) => [s.status, s.nextBillingAt ?? null])).toEqual(ids.map(() => ['canceled', null]));
  });

  it('keeps every one of 40 concurrent updates of one document (none reverts another)', async () => {
    const id = await activeSubscription();
    const applied = Array.from({ length: 40 }, (_, i) => `period-${i}`);
    await Promise.all(
      applied.map((entry, i) =>
        (i % 2 ? other : ctx.db).models.Subscription.updateOne({ _id: id }, { $push: { prorationsApplied: entry } }),
      ),
    );
    const after = await ctx.db.models.Subscription.findById(id, { prorationsApplied: 1 }).lean();
    expect([...(after?.prorationsApplied ?? [])].sort()).toEqual([...applied].sort());
  });

  it('frees the document when an update fails, so the next one is not held up', async () => {
    const id = await activeSubscription();
    const leases = new DocumentWriteLeases(ctx.redis, ctx.config.queuePrefix);
    const acquire = jest.spyOn(DocumentWriteLeases.prototype, 'acquire');
    await expect(
      ctx.db.models.Subscription.updateOne({ _id: id }, { $set: { amount: 'not a number' } }),
    ).rejects.toThrow(/Cast to Number failed/);
    // It held the document while it failed (this server needs the leases), and let it go.
    expect(acquire).toHaveBeenCalledWith('subscription', id);
    acquire.mockRestore();
    expect(await ctx.redis.exists(leases.key('subscription', id))).toBe(0);
    await ctx.db.models.Subscription.updateOne({ _id: id }, { $set: { amount: 5_000 } });
    expect((await ctx.db.models.Subscription.findById(id).lean())?.amount).toBe(5_000);
  });

  it('refuses an update that does not name one document by _id, changing nothing', async () => {
    const id = await activeSubscription();
    await expect(
      ctx.db.models.Subscription.updateOne({ companyId, customerRef: 'cust_x' }, { $set: { amount: 1 } }),
    ).rejects.toThrow(/must name one document by its _id/);
    await expect(ctx.db.models.Subscription.updateMany({ companyId }, { $set: { amount: 1 } })).rejects.toThrow(
      /one at a time/,
    );
    expect((await ctx.db.models.Subscription.findById(id).lean())?.amount).toBe(4_200);
  });
});

describe('a document write lease', () => {
  it('left by a writer that stopped runs out, and the next write takes the document then', async () => {
    const leases = new DocumentWriteLeases(ctx.redis, ctx.config.queuePrefix, { leaseMs: 5_000, waitMs: 5_000 });
    const id = `sub_${ulid()}`;
    const key = leases.key('subscription', id);
    // A process stopped while holding it: its lease is still there for 300 ms.
    await ctx.redis.set(key, 'a-stopped-writer', 'PX', 300);
    const lease = await leases.acquire('subscription', id);
    expect(await ctx.redis.get(key)).toBe(lease.token);
    await leases.release(lease);
    expect(await ctx.redis.exists(key)).toBe(0);
  });

  it('held past the wait refuses the write with a retryable error, and release leaves another holder alone', async () => {
    const leases = new DocumentWriteLeases(ctx.redis, ctx.config.queuePrefix, { leaseMs: 5_000, waitMs: 200 });
    const id = `sub_${ulid()}`;
    const holder = await leases.acquire('subscription', id);
    await expect(leases.acquire('subscription', id)).rejects.toBeInstanceOf(DocumentWriteUnavailableError);
    // A release with a lease that ran out (another token) does not free the current holder's.
    await leases.release({ key: holder.key, token: 'an-expired-lease' });
    expect(await ctx.redis.get(holder.key)).toBe(holder.token);
    await leases.release(holder);
  });
});
