import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { deleteKeysByPrefix } from '../../devtools/redis-keys';
import { withDatabaseName } from '../../devtools/services';
import { waitFor } from '../support/harness';
import { freePort } from '../../devtools/ports';

/**
 * `npm run dev` as a newcomer uses it: run scripts/dev.sh, follow what it prints to charge a test payment, press
 * Ctrl-C. Its services go on ports of their own, so it starts (and must stop) its own FerretDB and stripe-mock,
 * while Redis, already running, must be used and left alone.
 */
const ROOT = join(__dirname, '..', '..');

function portAnswers(port: number): Promise<boolean> {
  return fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1_000) }).then(
    () => true,
    (error: Error) => !/ECONNREFUSED/.test(String(error.cause ?? error)),
  );
}

/** Runs one function of scripts/lib.sh in a fresh bash, as the npm scripts do. */
function lib(snippet: string, env: Record<string, string> = {}) {
  const result = spawnSync('bash', ['-c', `set -euo pipefail; source scripts/lib.sh; ${snippet}`], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout.trim(), stderr: result.stderr.trim() };
}

describe('npm run dev', () => {
  const suffix = randomBytes(4).toString('hex');
  const runDir = mkdtempSync(join(tmpdir(), 'hb-dev-'));
  const queuePrefix = `{hbdev-${suffix}}`;
  let dev: ChildProcess | undefined;
  let output = '';
  let ports: Record<'api' | 'sim' | 'ferretdb' | 'stripeMock' | 'metrics', number>;

  beforeAll(async () => {
    ports = {
      api: await freePort(),
      sim: await freePort(),
      ferretdb: await freePort(),
      stripeMock: await freePort(),
      metrics: await freePort(),
    };
  });

  afterAll(async () => {
    if (dev?.exitCode === null) process.kill(-dev.pid!, 'SIGKILL');
    spawnSync('psql', [
      '-h',
      '127.0.0.1',
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-qc',
      `drop database if exists "hb_dev_${suffix}" with (force)`,
    ]);
    const redis = new Redis(process.env.REDIS_URL!);
    await deleteKeysByPrefix(redis, queuePrefix);
    await redis.quit();
    rmSync(runDir, { recursive: true, force: true });
  });

  it('brings the system up, the printed curl charges a test payment, and Ctrl-C stops what it started', async () => {
    dev = spawn('bash', ['scripts/dev.sh'], {
      cwd: ROOT,
      detached: true, // its own process group, so a Ctrl-C can be sent to the group as a terminal does
      env: {
        ...process.env,
        PORT: String(ports.api),
        STRIPE_SIM_PORT: String(ports.sim),
        FERRETDB_PORT: String(ports.ferretdb),
        STRIPE_MOCK_PORT: String(ports.stripeMock),
        FERRETDB_PG_DATABASE: `hb_dev_${suffix}`,
        SERVICES_RUN_DIR: runDir,
        QUEUE_PREFIX: queuePrefix,
        // Its own metrics port too: the defaults (9464-9466) may be another run's on a shared machine.
        METRICS_PORT: String(ports.metrics),
        NODE_ENV: 'development',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    dev.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    dev.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => dev!.once('exit', (code) => resolve(code)));

    await waitFor(
      async () => output,
      (text) => text.includes('curl -s -X POST') || dev!.exitCode !== null,
      { timeoutMs: 120_000, intervalMs: 200, what: 'npm run dev to print what to try' },
    );
    expect(output).toContain(`hipaa-billing is up: api and workers on http://127.0.0.1:${ports.api}`);

    // Follow what it printed: the export line, then the POST and the GET, as a shell would run them.
    const exportLine = /^\s*(export COMPANY=\S+ TOKEN=\S+)$/m.exec(output)![1]!;
    const post = /^\s*(curl -s -X POST[\s\S]*?serviceCategory": "copay"\}')$/m.exec(output)![1]!;
    const get = /^\s*(curl -s "[^"]*\/payments\/PAY_ID" -H "Authorization: Bearer \$TOKEN")/m.exec(output)![1]!;
    const shell = (script: string) =>
      spawnSync('bash', ['-c', `${exportLine}\n${script}`], { encoding: 'utf8' }).stdout;
    const accepted = JSON.parse(shell(post)) as { id: string; status: string };
    expect(accepted.status).toBe('queued');
    const payment = await waitFor(
      async () => JSON.parse(shell(get.replace('PAY_ID', accepted.id))) as { status: string; amount: number },
      (body) => body.status !== 'queued' && body.status !== 'processing',
      { timeoutMs: 30_000, what: 'the payment to settle' },
    );
    expect(payment).toMatchObject({ status: 'succeeded', amount: 2500 });
    // Logs are pino-pretty's, not JSON lines (the worker logs after it recorded the outcome).
    await waitFor(
      async () => output,
      (text) => /INFO.*payment settled/.test(text),
      { what: 'the pretty "payment settled" log line' },
    );

    process.kill(-dev.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    expect(output).toContain(`http://127.0.0.1:${ports.metrics}/metrics`);
    for (const port of [ports.api, ports.sim, ports.ferretdb, ports.stripeMock, ports.metrics]) {
      expect({ port, answers: await portAnswers(port) }).toEqual({ port, answers: false });
    }
    // Redis was already running: used, and left running.
    const redis = new Redis(process.env.REDIS_URL!);
    await expect(redis.ping()).resolves.toBe('PONG');
    await redis.quit();
  }, 180_000);
});

describe('the development data and the master key belong together', () => {
  // devtools/dev.js as scripts/dev.sh runs it (services already up), against a database of this test's own.
  const suffix = randomBytes(4).toString('hex');
  const dir = mkdtempSync(join(tmpdir(), 'hb-dev-key-'));
  const database = `hipaa_billing_dev_t${suffix}`;
  const queuePrefix = `{hbdevkey-${suffix}}`;
  const env = (keyFile: string, ports: { api: number; sim: number }) => ({
    ...process.env,
    NODE_ENV: 'development',
    MONGODB_URI: withDatabaseName(process.env.MONGODB_URI!, database),
    KEY_VAULT_NAMESPACE: `${database}_keys.__keyVault`,
    QUEUE_PREFIX: queuePrefix,
    LOCAL_MASTER_KEY_FILE: keyFile,
    AUDIT_ANCHOR_KEY_FILE: join(dir, 'anchor.pem'),
    PORT: String(ports.api),
    METRICS_PORT: '0',
    STRIPE_MOCK_URL: process.env.STRIPE_API_BASE!,
    STRIPE_API_BASE: `http://127.0.0.1:${ports.sim}`,
  });
  const running: ChildProcess[] = [];

  /** Runs dev.js until it says the system is up (then Ctrl-C) or it exits on its own; its output and exit code. */
  async function dev(keyFile: string, args: string[] = []): Promise<{ code: number | null; output: string }> {
    const ports = { api: await freePort(), sim: await freePort() };
    const child = spawn(process.execPath, [join(ROOT, 'dist', 'devtools', 'dev.js'), ...args], {
      cwd: ROOT,
      detached: true,
      env: env(keyFile, ports),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(child);
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await waitFor(
      async () => output,
      (text) => text.includes('hipaa-billing is up') || child.exitCode !== null,
      { timeoutMs: 90_000, intervalMs: 200, what: 'dev.js to come up or stop' },
    );
    if (child.exitCode === null) process.kill(-child.pid!, 'SIGINT');
    return { code: await exited, output };
  }

  afterAll(async () => {
    for (const child of running) if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
    const { MongoClient } = await import('mongodb');
    const client = new MongoClient(process.env.MONGODB_URI!);
    await client.db(database).dropDatabase();
    await client.db(`${database}_keys`).dropDatabase();
    await client.close();
    const redis = new Redis(process.env.REDIS_URL!);
    await deleteKeysByPrefix(redis, queuePrefix);
    await redis.quit();
    rmSync(dir, { recursive: true, force: true });
  });

  it('data of another checkout (or a deleted .secrets/) stops with one line, and --reset starts over', async () => {
    const first = join(dir, 'first-checkout.key');
    const second = join(dir, 'second-checkout.key');
    // Another checkout set the data up with its key (as before the key was recorded with the data).
    const setup = spawnSync(process.execPath, [join(ROOT, 'dist', 'cli', 'main.js'), 'dev-setup'], {
      cwd: ROOT,
      env: env(first, { api: 1, sim: 1 }),
      encoding: 'utf8',
    });
    expect(setup.status).toBe(0);

    const stopped = await dev(second);
    expect(stopped.code).toBe(1);
    const line = `npm run dev: the development data in MongoDB database ${database} was encrypted under another master key than ${second} (another checkout's, or .secrets/ was deleted); start over with \`npm run dev -- --reset\`, which drops only the development data`;
    expect(stopped.output.trim().split('\n').at(-1)).toBe(line);
    expect(stopped.output).not.toContain('HMAC');

    const reset = await dev(second, ['--reset']);
    expect(reset.output).toContain(`npm run dev -- --reset: dropped ${database}, ${database}_keys`);
    expect(reset.output).toContain('hipaa-billing is up');
    expect(reset.code).toBe(0);

    // The data now belongs to the second key: the first checkout's key is told the same, before anything starts.
    const other = await dev(first);
    expect(other.code).toBe(1);
    expect(other.output.trim().split('\n').at(-1)).toBe(line.replace(second, first));
  }, 240_000);
});

describe('FerretDB storage', () => {
  it('without a PostgreSQL on the machine, runs on a cluster of its own and stops it with FerretDB', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'hb-own-pg-'));
    const [machinePg, ownPg, ferretdb] = [await freePort(), await freePort(), await freePort()];
    const result = lib(
      `start_ferretdb
       node scripts/probe.cjs mongodb mongodb://127.0.0.1:${ferretdb} && echo "ferretdb answers"
       pg_isready -q -h 127.0.0.1 -p ${ownPg} && echo "own postgresql answers"
       grep -q "pool_max_conns=7" /proc/$(ss -Hltnp "sport = :${ferretdb}" | sed -n 's/.*pid=\\([0-9]*\\).*/\\1/p')/cmdline && echo "pool bounded"
       stop_started_services
       sleep 1
       port_open ${ferretdb} || echo "ferretdb stopped"
       port_open ${ownPg} || echo "own postgresql stopped"`,
      {
        SERVICES_RUN_DIR: runDir,
        POSTGRESQL_PORT: String(machinePg),
        OWN_POSTGRESQL_PORT: String(ownPg),
        FERRETDB_PORT: String(ferretdb),
        FERRETDB_PG_POOL_MAX_CONNS: '7',
      },
    );
    rmSync(runDir, { recursive: true, force: true });
    expect(result).toMatchObject({ status: 0 });
    expect(result.stdout.split('\n')).toEqual([
      'ferretdb answers',
      'own postgresql answers',
      'pool bounded',
      'ferretdb stopped',
      'own postgresql stopped',
    ]);
  }, 60_000);
});

describe('a bad environment gets one clear line', () => {
  let squatter: Server;
  let squatted: number;

  beforeAll(async () => {
    squatted = await freePort();
    squatter = createServer((socket) => socket.end('HTTP/1.1 200 OK\r\n\r\nnot a database'));
    await new Promise<void>((resolve) => squatter.listen(squatted, '127.0.0.1', resolve));
  });
  afterAll(() => new Promise<void>((resolve) => squatter.close(() => resolve())));

  it('a port taken by something that is not the expected service', () => {
    const result = lib('start_ferretdb', { FERRETDB_PORT: String(squatted) });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      `hipaa-billing: port ${squatted} is taken by node (pid ${process.pid}), which does not speak the MongoDB protocol; stop it or set FERRETDB_PORT`,
    );
    const api = lib(`require_free_port ${squatted} "the api" PORT`);
    expect(api.stderr).toBe(
      `hipaa-billing: port ${squatted} (for the api) is taken by node (pid ${process.pid}), which is not ours; stop it or set PORT to another port`,
    );
  });

  it("a PostgreSQL that refuses the connection: psql's own reason, not a guess", () => {
    const bin = mkdtempSync(join(tmpdir(), 'hb-full-pg-'));
    writeFileSync(join(bin, 'pg_isready'), '#!/bin/sh\nexit 0\n');
    writeFileSync(
      join(bin, 'psql'),
      '#!/bin/sh\necho \'psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already\' >&2\nexit 2\n',
    );
    chmodSync(join(bin, 'pg_isready'), 0o755);
    chmodSync(join(bin, 'psql'), 0o755);
    const result = lib('start_postgresql', { PATH: `${bin}:${process.env.PATH}`, FERRETDB_POSTGRESQL_URL: '' });
    rmSync(bin, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(
      'hipaa-billing: the PostgreSQL on 127.0.0.1:5432 refused us: psql: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  sorry, too many clients already',
    );
  });

  it('an old Node.js', () => {
    const bin = mkdtempSync(join(tmpdir(), 'hb-old-node-'));
    writeFileSync(
      join(bin, 'node'),
      `#!/bin/sh\nif [ "$2" = process.versions.node ]; then echo 18.20.4; else exec ${process.execPath} "$@"; fi\n`,
    );
    chmodSync(join(bin, 'node'), 0o755);
    const result = lib('check_node', { PATH: `${bin}:${process.env.PATH}` });
    rmSync(bin, { recursive: true, force: true });
    expect(result).toMatchObject({
      status: 1,
      stderr: 'hipaa-billing: Node.js 18.20.4 is too old: 20.19 or newer 20.x is needed',
    });
  });

  it('no Go when a service still has to be built', () => {
    const emptyBinDir = mkdtempSync(join(tmpdir(), 'hb-bin-'));
    const pathWithoutGo = (process.env.PATH ?? '')
      .split(':')
      .filter((dir) => !existsSync(join(dir, 'go')))
      .join(':');
    const result = lib('ensure_go_services stripe-mock', { SERVICES_BIN_DIR: emptyBinDir, PATH: pathWithoutGo });
    rmSync(emptyBinDir, { recursive: true, force: true });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /^hipaa-billing: Go 1\.24 or newer is needed once, to build stripe-mock into .*hb-bin-/,
    );
  });

  // Run as root here (CI and this project's machines are); the check itself runs as an unprivileged user.
  it('no root to install Debian packages', () => {
    const result = spawnSync(
      'runuser',
      ['-u', 'nobody', '--', 'bash', '-c', 'source scripts/lib.sh; as_root apt-get install -y poppler-utils'],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(
      'hipaa-billing: this needs root, and nobody is neither root nor allowed password-less sudo: run once as root: apt-get install -y poppler-utils',
    );
  });
});
