/**
 * A MongoDB connection whose socket the server closed, used before the driver has seen the close.
 *
 * When the database restarts, Node destroys each socket at once but emits its 'close' a turn of the event loop later.
 * A command written in between met a socket that takes no more writes and never says why (no 'drain', no 'error'),
 * and the driver waited for it forever. When that command was a monitor's heartbeat, the client never checked the
 * server again: the chaos suite saw a workers process whose audit, invoice and webhook-delivery writes failed for
 * minutes after the restart while every other process had long recovered. `patches/mongodb+6.20.0.patch` makes such
 * a write fail as the network error it is, so the command is retried or fails, and the monitor goes on checking.
 *
 * The race is made exact by reaching into the driver for the pool's one connection and destroying its socket, as the
 * server's close does, just before a read is sent on it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient } from 'mongodb';

interface DriverInternals {
  topology: { s: { servers: Map<string, { pool: { connections: { first(): { socket: { destroy(): void } } } } }> } };
}

let client: MongoClient;

beforeAll(async () => {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is set by the global setup');
  // One pooled connection, and no retried read, so the read below goes on the connection whose socket is destroyed.
  client = await MongoClient.connect(uri, { maxPoolSize: 1, retryReads: false, serverSelectionTimeoutMS: 5_000 });
});

afterAll(async () => {
  await client?.close(true);
});

it('a read sent on a connection the server just closed fails at once, and the next read is answered', async () => {
  const collection = client.db('socket_closed_test').collection<{ _id: string }>('probes');
  await collection.updateOne({ _id: 'probe' }, { $set: { _id: 'probe' } }, { upsert: true });

  const [server] = (client as unknown as DriverInternals).topology.s.servers.values();
  server!.pool.connections.first().socket.destroy();
  const read = collection.findOne({ _id: 'probe' }).then(
    () => 'answered',
    (error: Error) => error.name,
  );
  const outcome = await Promise.race([read, sleep(5_000, 'still waiting after 5 s', { ref: false })]);
  expect(outcome).toBe('MongoNetworkError');

  await expect(collection.findOne({ _id: 'probe' })).resolves.toEqual({ _id: 'probe' });
});
