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

interface DriverSocket {
  destroy(): void;
  write(chunk: Buffer): boolean;
}
interface DriverInternals {
  topology: { s: { servers: Map<string, { pool: { connections: { first(): { socket: DriverSocket } } } }> } };
}

/** The socket of the pool's one connection (maxPoolSize 1, after a first command). */
function pooledSocket(): DriverSocket {
  const [server] = (client as unknown as DriverInternals).topology.s.servers.values();
  return server!.pool.connections.first().socket;
}

/** What a command came to within 5 s: answered, the error's name, or still waiting. */
function settledWithin5s(command: Promise<unknown>): Promise<string> {
  const outcome = command.then(
    () => 'answered',
    (error: Error) => error.name,
  );
  return Promise.race([outcome, sleep(5_000, 'still waiting after 5 s', { ref: false })]);
}

let client: MongoClient;

beforeAll(async () => {
  const uri = process.env.MONGODB_URI;
  if (!uri) throw new Error('MONGODB_URI is set by the global setup');
  // One pooled connection, and nothing retried, so each command below goes on the connection whose socket is
  // destroyed, and its outcome is the one the test sees.
  client = await MongoClient.connect(uri, {
    maxPoolSize: 1,
    retryReads: false,
    retryWrites: false,
    serverSelectionTimeoutMS: 5_000,
  });
});

afterAll(async () => {
  await client?.db('socket_closed_test').dropDatabase();
  await client?.close(true);
});

const probes = () => client.db('socket_closed_test').collection<{ _id: string; blob?: string }>('probes');

it('a read sent on a connection the server just closed fails at once, and the next read is answered', async () => {
  await probes().updateOne({ _id: 'probe' }, { $set: { _id: 'probe' } }, { upsert: true });

  pooledSocket().destroy();
  expect(await settledWithin5s(probes().findOne({ _id: 'probe' }))).toBe('MongoNetworkError');

  await expect(probes().findOne({ _id: 'probe' })).resolves.toEqual({ _id: 'probe' });
});

it('a large write whose socket closes while it waits for the socket to drain fails, and the next write is stored', async () => {
  await probes().findOne({ _id: 'probe' });
  // 8 MB is more than the socket's buffer takes at once: the driver waits for 'drain', and the server's close comes
  // in that wait (the socket destroyed just after the write, as a reset would).
  const socket = pooledSocket();
  const write = socket.write.bind(socket);
  socket.write = (chunk) => {
    const wrote = write(chunk);
    socket.destroy();
    return wrote;
  };
  expect(await settledWithin5s(probes().insertOne({ _id: 'large', blob: 'x'.repeat(8 << 20) }))).toBe(
    'MongoNetworkError',
  );

  await probes().insertOne({ _id: 'after' });
  await expect(probes().countDocuments({ _id: { $in: ['large', 'after'] } })).resolves.toBe(1);
});
