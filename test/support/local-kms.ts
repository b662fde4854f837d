import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createServer } from 'node:tls';
import { selfSignedCertificate } from './tls';

/**
 * local-kms (github.com/nsmithuk/local-kms): a real AWS KMS API server that
 * `npm test` (scripts/lib.sh) builds into the services bin dir. libmongocrypt
 * only talks TLS to a KMS and local-kms only plain HTTP, so a TLS proxy with a
 * throwaway certificate sits in front of it; clients trust that certificate
 * through KMS_TLS_CA_FILE.
 */

const REGION = 'us-east-1';
const ACCOUNT_ID = '111122223333';
const START_DEADLINE_MS = 15_000;

export function localKmsBinaryPath(): string {
  return join(process.env.SERVICES_BIN_DIR || join(homedir(), '.cache', 'hipaa-billing', 'bin'), 'local-kms');
}

/**
 * The binary, or undefined when it is not installed on a developer's machine (the caller skips, saying so).
 * In CI (CI=true) a missing binary is an error: the install script must have built it.
 */
export function findLocalKms(): string | undefined {
  const binary = localKmsBinaryPath();
  if (existsSync(binary)) return binary;
  const hint = `${binary} is missing; run the tests with \`npm test\`, which builds it`;
  if (process.env.CI === 'true') throw new Error(`local-kms is required in CI: ${hint}`);
  console.warn(`SKIPPING the KMS key-rotation tests: ${hint}`);
  return undefined;
}

export interface LocalKms {
  region: string;
  /** host:port of the TLS endpoint, as AWS_KMS_ENDPOINT takes it. */
  endpoint: string;
  /** The certificate the endpoint presents, for KMS_TLS_CA_FILE. */
  caFile: string;
  /** ARNs of the symmetric keys it was seeded with. */
  keyArns: string[];
  /** Disables a key, as an operator retiring a CMK would: nothing wrapped by it unwraps any more. */
  disableKey(arn: string): Promise<void>;
  close(): Promise<void>;
}

export async function startLocalKms(binary: string, keyCount = 2): Promise<LocalKms> {
  const dir = mkdtempSync(join(tmpdir(), 'hb-local-kms-'));
  const keyIds = Array.from({ length: keyCount }, () => randomUUID());
  const seed = [
    'Keys:',
    '  Symmetric:',
    '    Aes:',
    ...keyIds.flatMap((id) => [
      '      - Metadata:',
      `          KeyId: ${id}`,
      '        BackingKeys:',
      `          - ${randomBytes(32).toString('hex')}`,
    ]),
  ].join('\n');
  writeFileSync(join(dir, 'seed.yaml'), `${seed}\n`);

  const child = spawn(binary, [], {
    env: {
      PORT: '0',
      KMS_REGION: REGION,
      KMS_ACCOUNT_ID: ACCOUNT_ID,
      KMS_DATA_PATH: join(dir, 'data'),
      KMS_SEED_PATH: join(dir, 'seed.yaml'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let output = '';
  const httpPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`local-kms did not start; its output:\n${output}`)),
      START_DEADLINE_MS,
    );
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const started = /Local KMS started on [^\s]*:(\d+)/.exec(output);
      if (started) {
        clearTimeout(timer);
        resolve(Number(started[1]));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`local-kms exited before it started; its output:\n${output}`));
    });
  });

  const { certFile, keyFile } = selfSignedCertificate();
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const proxy = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (client) => {
    const upstream = connect(httpPort, '127.0.0.1');
    track(client);
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  const tlsPort = typeof address === 'object' && address ? address.port : 0;

  return {
    region: REGION,
    endpoint: `127.0.0.1:${tlsPort}`,
    caFile: certFile,
    keyArns: keyIds.map((id) => `arn:aws:kms:${REGION}:${ACCOUNT_ID}:key/${id}`),
    async disableKey(arn) {
      const response = await fetch(`http://127.0.0.1:${httpPort}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DisableKey' },
        body: JSON.stringify({ KeyId: arn }),
      });
      if (!response.ok) throw new Error(`local-kms DisableKey answered ${response.status}: ${await response.text()}`);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      rmSync(dirname(certFile), { recursive: true, force: true });
    },
  };
}
