import { generateKeyPairSync } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { BlockList, type AddressInfo } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { ulid } from 'ulid';
import { openDatabase, type Database } from '../../models';
import { createCompany } from '../../models/companies';
import { loadConfig } from '../../platform/config';
import { QUEUE_NAMES } from '../../queues/names';
import { enqueueWebhookDelivery } from '../../queues/webhook-deliveries.queue';
import { createTestContext, waitFor, type TestContext } from '../support/harness';
import { insertOutgoingDeliveries } from '../support/records';
import { findLocalKms, startLocalKms, type LocalKms } from '../support/local-kms';
import { assertBuildIsCurrent, startNodeProcess, type NodeProcess } from '../support/processes';
import { rsaKeyPair, selfSignedCertificate } from '../support/tls';

/**
 * Issue 21 §3, SSRF through the whole system in production mode: the compiled api and workers run as processes with
 * NODE_ENV=production settings (a KMS over TLS — local-kms —, RS256 tokens, a trusted proxy for https, an anchor key of
 * their own, no Stripe override). A private receiver (https, on loopback) counts every TCP connection it gets.
 *
 * - Save time: the api refuses webhook URLs whose host is a private, loopback, link-local or metadata address.
 * - Connect time: a host NAME is not resolved when it is saved (DNS may change later, so resolving then proves
 *   nothing); this machine's own name resolves to loopback (its /etc/hosts, as on most hosts — the test fails if it
 *   does not, never skips), so an endpoint saved through the production api with it passes the save-time check, and
 *   the production workers' connect-time check (request-filtering-agent) must refuse it. Likewise an endpoint whose
 *   literal loopback URL is already in the database (saved by a development api, or before the rules): production
 *   workers refuse it at connect time too.
 * Both deliveries end `failed`, every attempt `address_refused`, and the receiver never sees a connection.
 */
const kmsBinary = findLocalKms();
const describeWithKms = kmsBinary ? describe : describe.skip;

const LOOPBACK_OR_PRIVATE = new BlockList();
for (const [net, bits] of [
  ['127.0.0.0', 8],
  ['10.0.0.0', 8],
  ['172.16.0.0', 12],
  ['192.168.0.0', 16],
] as const)
  LOOPBACK_OR_PRIVATE.addSubnet(net, bits, 'ipv4');
LOOPBACK_OR_PRIVATE.addAddress('::1', 'ipv6');

describeWithKms('outgoing webhooks in production refuse private receivers', () => {
  let ctx: TestContext;
  let kms: LocalKms;
  let prodDb: Database;
  let api: NodeProcess | undefined;
  let workers: NodeProcess | undefined;
  let receiver: Server;
  let receiverPort: number;
  let connections = 0;
  let apiUrl: string;
  let token: string;
  let companyId: string;
  let keyDir: string;

  beforeAll(async () => {
    assertBuildIsCurrent();
    const resolved = await lookup(hostname());
    if (!LOOPBACK_OR_PRIVATE.check(resolved.address, resolved.family === 6 ? 'ipv6' : 'ipv4')) {
      throw new Error(
        `this test needs the machine's own name (${hostname()}) to resolve to a loopback or private address; it resolves to ${resolved.address}`,
      );
    }
    const tls = selfSignedCertificate();
    receiver = createServer(
      { key: readFileSync(tls.keyFile), cert: readFileSync(tls.certFile) },
      (_request, response) => response.writeHead(204).end(),
    );
    receiver.on('connection', () => (connections += 1));
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverPort = (receiver.address() as AddressInfo).port;

    kms = await startLocalKms(kmsBinary!, 1);
    ctx = await createTestContext('webhook_ssrf_prod');
    keyDir = mkdtempSync(join(tmpdir(), 'hb-ssrf-'));
    const anchorKeyFile = join(keyDir, 'anchor-ed25519.pem');
    const anchorPublicKeyFile = join(keyDir, 'anchor-ed25519.pub.pem');
    const anchor = generateKeyPairSync('ed25519');
    writeFileSync(anchorKeyFile, anchor.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    writeFileSync(anchorPublicKeyFile, anchor.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const jwt = rsaKeyPair();
    const issuer = 'https://idp.example.test/';
    const audience = 'hipaa-billing-ssrf-e2e';
    const production: Record<string, string> = {
      NODE_ENV: 'production',
      LOG_LEVEL: 'info',
      HOST: '127.0.0.1',
      REDIS_URL: ctx.env.REDIS_URL!,
      MONGODB_URI: ctx.env.MONGODB_URI!,
      QUEUE_PREFIX: ctx.env.QUEUE_PREFIX!,
      KEY_VAULT_NAMESPACE: ctx.env.KEY_VAULT_NAMESPACE!,
      METRICS_PORT: '0',
      API_CONTRACT_CHECK: 'true',
      KMS_PROVIDER: 'aws',
      AWS_KMS_KEY_ARN: kms.keyArns[0]!,
      AWS_KMS_REGION: kms.region,
      AWS_KMS_ENDPOINT: kms.endpoint,
      KMS_TLS_CA_FILE: kms.caFile,
      AWS_ACCESS_KEY_ID: 'AKIALOCALKMSTEST',
      AWS_SECRET_ACCESS_KEY: 'local-kms-does-not-check-signatures',
      AUTH_PUBLIC_KEY_FILE: jwt.publicKeyFile,
      AUTH_ISSUER: issuer,
      AUTH_AUDIENCE: audience,
      // Behind a TLS-terminating proxy on this host: requests say `x-forwarded-proto: https`.
      TRUST_PROXY: '127.0.0.1',
      // The workers sign audit anchors; the api only verifies them.
      AUDIT_ANCHOR_KEY_FILE: anchorKeyFile,
      // Three attempts 200 ms apart: the delivery is settled within the test.
      WEBHOOK_RETRY_SCHEDULE_MS: '200,200',
    };
    // The production processes' own view of the database (the company's data key wrapped by the KMS key).
    const config = loadConfig(production);
    expect(config.webhooks.allowLoopback).toBe(false);
    prodDb = await openDatabase(config);
    companyId = await createCompany(prodDb, { name: 'Harbor Street Clinic' });
    const now = Math.floor(Date.now() / 1000);
    token = await new SignJWT({ company_id: companyId, roles: ['company_admin'] })
      .setProtectedHeader({ alg: 'RS256' })
      .setSubject('usr-ssrf-e2e')
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(jwt.privateKey);

    api = startNodeProcess('api', 'api/main.js', {
      ...production,
      PORT: '0',
      AUDIT_ANCHOR_PUBLIC_KEY_FILE: anchorPublicKeyFile,
    });
    workers = startNodeProcess('workers', 'workers/main.js', production);
    const listening = await api.waitForLog((r) => r.msg === 'api listening', { what: '"api listening"' });
    apiUrl = String(listening.url);
    await workers.waitForLog((r) => r.msg === 'workers started', { what: '"workers started"' });
  }, 90_000);

  afterAll(async () => {
    await Promise.all([api?.kill(), workers?.kill()]);
    await prodDb?.close();
    await ctx?.close();
    await kms?.close();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
    if (keyDir) rmSync(keyDir, { recursive: true, force: true });
  });

  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${apiUrl}/v1/companies/${companyId}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        'x-forwarded-proto': 'https',
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: response.status, body: (await response.json()) as any };
  };

  it('refuses, when saved, URLs whose host is a private, loopback, link-local or metadata address, and plain http', async () => {
    for (const url of [
      `https://127.0.0.1:${receiverPort}/hooks`,
      `https://[::1]:${receiverPort}/hooks`,
      `https://localhost:${receiverPort}/hooks`,
      'https://10.1.2.3/hooks',
      'https://192.168.10.20/hooks',
      'https://169.254.169.254/latest/meta-data/',
      'https://0x7f000001/hooks',
      'http://billing.example.com/hooks',
    ]) {
      const answer = await call('POST', '/webhook-endpoints', { url, enabledEvents: ['*'] });
      expect({ url, status: answer.status, code: answer.body.error?.code }).toEqual({
        url,
        status: 422,
        code: 'webhook_url_refused',
      });
    }
    const listed = await call('GET', '/webhook-endpoints');
    expect(listed.body.items).toEqual([]);
  });

  it('refuses at connect time a name that resolves to this host, and a loopback URL already stored: failed, nothing received', async () => {
    // Saved through the production api: a name passes the save-time check (it is not resolved then).
    const named = await call('POST', '/webhook-endpoints', {
      url: `https://${hostname()}:${receiverPort}/hooks`,
      enabledEvents: ['*'],
    });
    expect(named.status).toBe(201);
    // Already in the database, as a development api (loopback allowed there) would have saved it.
    const storedId = `we_${ulid()}`;
    await prodDb.models.WebhookEndpoint.create({
      _id: storedId,
      companyId,
      url: `https://127.0.0.1:${receiverPort}/hooks`,
      enabledEvents: ['*'],
      disabled: false,
      secrets: [{ secret: await prodDb.encryption.encrypt(companyId, named.body.secret), createdAt: new Date() }],
    });

    const endpointIds = [named.body.id as string, storedId];
    const stored = await insertOutgoingDeliveries(prodDb.models, { companyId, endpointIds });
    const deliveryIds: Record<string, string> = {};
    for (const [i, endpointId] of endpointIds.entries()) {
      const deliveryId = stored.deliveryIds[i]!;
      deliveryIds[endpointId] = deliveryId;
      await enqueueWebhookDelivery(ctx.queues[QUEUE_NAMES.webhookDeliveries], { deliveryId }, [200, 200]);
    }

    for (const [endpointId, deliveryId] of Object.entries(deliveryIds)) {
      const delivery = await waitFor(
        async () => (await call('GET', `/webhook-endpoints/${endpointId}/deliveries`)).body.items?.[0],
        (item: any) => item?.id === deliveryId && item.status === 'failed',
        { timeoutMs: 30_000, what: `delivery ${deliveryId} to end failed` },
      );
      expect(delivery.attempts.map((a: any) => a.errorCode)).toEqual([
        'address_refused',
        'address_refused',
        'address_refused',
      ]);
      expect(delivery.attempts.every((a: any) => a.statusCode === undefined)).toBe(true);
    }
    expect(connections).toBe(0);
    // The workers said why, without the URL's secret parts (there are none here) or the body.
    expect(workers!.text()).toContain('address_refused');
  });
});
