/**
 * `npm run dev`, once scripts/dev.sh has installed, built and started the services: stripe-sim in this process,
 * the demo company (`cli dev-setup`), then api + workers as one child (`dist/server/main.js`, what `npm start`
 * runs) whose JSON log lines are shown through pino-pretty. Once the api is ready it prints what to try, and seeds
 * the demo practice (`cli seed demo`) if it is not there yet.
 * SIGINT/SIGTERM stop the child (it finishes in-flight work), then stripe-sim.
 */
import { execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pretty from 'pino-pretty';
import { loadConfig, type AppConfig } from '../platform/config';
import { devDataKeyStatus, recordDevDataKey, resetDevData, startOverLine } from './dev-data';
import { pollUntil } from './polling';
import { startStripeSim } from './stripe-sim';

const DIST = join(__dirname, '..');

/** A one-line error for `npm run dev` to print (no stack, no "Command failed: …"). */
class DevStop extends Error {}

async function demoCredentials(env: NodeJS.ProcessEnv, config: AppConfig): Promise<{ company: string; token: string }> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(DIST, 'cli', 'main.js'), 'dev-setup'], {
    env,
  }).catch((error: Error & { stderr?: string }) => {
    // Data written before this checkout's key was recorded: its data keys do not unwrap under this key.
    if (/HMAC validation failure/.test(`${error.stderr ?? ''}${error.message}`))
      throw new DevStop(startOverLine(config));
    throw error;
  });
  const value = (name: string) => new RegExp(`^export ${name}=(\\S+)$`, 'm').exec(stdout)?.[1];
  const company = value('COMPANY');
  const token = value('TOKEN');
  if (!company || !token) throw new Error(`dev-setup printed no COMPANY/TOKEN:\n${stdout}`);
  return { company, token };
}

function nextSteps(apiUrl: string, company: string, token: string, env: NodeJS.ProcessEnv): string {
  // The cli in another terminal must find this checkout's data (scripts/dev.sh names its database, vault and queues).
  const defaults = loadConfig({});
  const settings = [
    env.MONGODB_URI && env.MONGODB_URI !== defaults.mongodbUri ? `MONGODB_URI=${env.MONGODB_URI}` : '',
    env.KEY_VAULT_NAMESPACE && env.KEY_VAULT_NAMESPACE !== defaults.keyVaultNamespace
      ? `KEY_VAULT_NAMESPACE=${env.KEY_VAULT_NAMESPACE}`
      : '',
  ].filter(Boolean);
  const newToken = `${settings.map((setting) => `${setting} `).join('')}npm run -s cli -- dev-setup`;
  const payments = `${apiUrl}/v1/companies/${company}/payments`;
  return [
    '',
    `hipaa-billing is up: api and workers on ${apiUrl}, Stripe simulated by stripe-sim on ${env.STRIPE_API_BASE}.`,
    'In another terminal, charge a test payment (the token is good for 15 minutes; a new one: eval "$(' +
      newToken +
      ')"):',
    '',
    `  export COMPANY=${company} TOKEN=${token}`,
    `  curl -s -X POST "${apiUrl}/v1/companies/$COMPANY/payments" -H "Authorization: Bearer $TOKEN" \\`,
    `    -H 'Content-Type: application/json' -H "Idempotency-Key: demo-$(date +%s)" \\`,
    `    -d '{"amount": 2500, "currency": "usd", "customer": "cus_demo123", "paymentMethod": "pm_card_visa", "serviceCategory": "copay"}'`,
    `  curl -s "${payments}/PAY_ID" -H "Authorization: Bearer $TOKEN"     # PAY_ID: the id the POST answered`,
    '',
    'pm_card_chargeDeclined declines, pm_card_threeDSecure2Required asks for 3-D Secure. Ctrl-C stops what npm run dev started.',
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const config = loadConfig();
  if (process.argv.includes('--reset')) {
    const dropped = await resetDevData(config);
    console.log(`npm run dev -- --reset: dropped ${dropped.join(', ')}; starting over`);
  } else if ((await devDataKeyStatus(config)) === 'mismatch') {
    throw new DevStop(startOverLine(config));
  }
  const stripeSimUrl = new URL(process.env.STRIPE_API_BASE ?? 'http://127.0.0.1:12113');
  const sim = await startStripeSim({
    upstreamUrl: process.env.STRIPE_MOCK_URL ?? 'http://127.0.0.1:12111',
    host: stripeSimUrl.hostname,
    port: Number(stripeSimUrl.port),
    logger: { info: (message) => console.log(message), warn: (message) => console.warn(message) },
  });
  const env = { ...process.env, STRIPE_API_BASE: sim.url };
  const { company, token } = await demoCredentials(env, config).catch(async (error: unknown) => {
    await sim.close();
    throw error;
  });
  await recordDevDataKey(config);

  const child = spawn(process.execPath, [join(DIST, 'server', 'main.js')], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  child.stdout.pipe(pretty({ colorize: process.stdout.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid' }));
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`api + workers exited (${signal ?? `code ${code}`}); stopping`);
    stopping = true;
    if (code !== 0 && signal === null) process.exitCode = code ?? 1;
    void sim.close();
  });
  // Ctrl-C reaches the child too (same process group); SIGTERM from elsewhere is passed on. It finishes in-flight work.
  const stop = () => {
    stopping = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  const apiUrl = `http://${config.http.host}:${config.http.port}`;
  await pollUntil(
    () =>
      fetch(`${apiUrl}/readyz`).then(
        (response) => response.ok,
        () => false,
      ),
    (ready) => ready || stopping,
    { timeoutMs: 60_000, intervalMs: 200, what: `the api to answer ${apiUrl}/readyz` },
  );
  if (stopping) return;
  console.log(nextSteps(apiUrl, company, token, env));
  // The demo practice (plans, subscriptions on a test clock, payments, a refund), once: the running workers charge it.
  execFile(process.execPath, [join(DIST, 'cli', 'main.js'), 'seed', 'demo'], { env }, (error, stdout, stderr) => {
    if (stopping) return;
    if (error) console.error(`demo practice not seeded: ${stderr.trim() || error.message}`);
    else console.log(`demo practice:\n${stdout.replace(/^/gm, '  ')}`);
  });
}

main().catch((error: unknown) => {
  console.error(`npm run dev: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
