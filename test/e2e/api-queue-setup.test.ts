import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createCompany } from '../../models/companies';
import { mintDevToken } from '../../devtools/tokens';
import { freePort } from '../../devtools/ports';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';

/**
 * Found by the chaos suite at start-up on a loaded machine: Redis answers the api's connection, then answers slowly
 * for a few seconds, past the api's 2 s command timeout, just as the queues check Redis's version. BullMQ keeps that
 * set-up error for good, so every audited change answered 503 `audit_unavailable` until the api was restarted. The
 * api now makes such queues again: once Redis answers in time, changes are audited and answered 200.
 */

const SLOW_MS = 2_500;
const SLOW_WINDOW_MS = 4_000;

let ctx: TestContext;
let redis: ChildProcess;
let proxy: Server;
let api: NodeProcess | undefined;
const sockets = new Set<Socket>();
let slowFrom: number | undefined;
let delayedReplies = 0;

/**
 * A TCP proxy in front of Redis: from the api's first `CONFIG GET maxmemory-policy` (sent once its connection is
 * ready, before the queues are made) Redis's replies are held 2.5 s for 4 s, in order.
 */
async function startSlowingProxy(redisPort: number): Promise<number> {
  proxy = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: redisPort });
    sockets.add(client).add(upstream);
    let lastWriteAt = 0;
    client.on('data', (chunk: Buffer) => {
      if (slowFrom === undefined && chunk.includes('maxmemory-policy')) slowFrom = Date.now();
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      const now = Date.now();
      const slow = slowFrom !== undefined && now - slowFrom < SLOW_WINDOW_MS;
      if (slow) delayedReplies += 1;
      lastWriteAt = Math.max(lastWriteAt, now + (slow ? SLOW_MS : 0));
      setTimeout(() => client.writable && client.write(chunk), lastWriteAt - now);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => proxy.listen(port, '127.0.0.1', resolve));
  return port;
}

beforeAll(async () => {
  assertBuildIsCurrent();
  ctx = await createTestContext('api_queue_setup');
  const redisPort = await freePort();
  redis = spawn('redis-server', [
    '--port',
    String(redisPort),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
  ]);
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: redisPort });
        socket.once('connect', () => {
          socket.destroy();
          resolve(true);
        });
        socket.once('error', () => resolve(false));
      }),
    Boolean,
    { timeoutMs: 20_000, what: 'the test Redis to listen' },
  );
  const proxyPort = await startSlowingProxy(redisPort);
  const port = await freePort();
  api = startNodeProcess('api', 'api/main.js', {
    ...ctx.env,
    REDIS_URL: `redis://127.0.0.1:${proxyPort}`,
    PORT: String(port),
    METRICS_PORT: '0',
  });
  await api.waitForLog((record) => record.msg === 'api listening', { timeoutMs: 90_000, what: 'api listening' });
}, 150_000);

afterAll(async () => {
  await api?.kill();
  for (const socket of sockets) socket.destroy();
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  redis?.kill('SIGKILL');
  await ctx?.close();
});

it('Redis slow while the api makes its queues: audited changes are queued afterwards, not refused for good', async () => {
  expect(delayedReplies).toBeGreaterThan(0);
  const companyId = await createCompany(ctx.db, { name: 'Slow Redis Clinic' });
  const token = await mintDevToken(ctx.config, { companyId, roles: ['company_admin'], subject: 'usr-slow-redis' });
  const url = String(api!.logRecords().find((r) => r.msg === 'api listening')?.url);
  const answer = await fetch(`${url}/v1/companies/${companyId}/payment-config`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      mode: 'company',
      credentials: { secretKey: 'sk_test_51SlowRedisAccount0', webhookSigningSecrets: ['whsec_SlowRedisSigning0001'] },
    }),
  });
  expect({ status: answer.status, body: await answer.text() }).toMatchObject({ status: 200 });
}, 60_000);
