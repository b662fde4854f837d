import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { signedHeaders, signingSecrets } from '../../application/outgoing-webhooks/deliver-webhook';
import { webhookEventTypeOf, WEBHOOK_EVENT_TYPES } from '../../domain/webhook-catalog';
import { retryDelayMs, webhookUrlProblem } from '../../domain/webhook-endpoint';
import { WebhookSender } from '../../gateway/webhook-sender';
import { loadConfig } from '../../platform/config';

const production = { httpsOnly: true, allowLoopback: false };
const development = { httpsOnly: false, allowLoopback: true };

describe('webhook URLs (refused when saved)', () => {
  it.each([
    ['http://hooks.example.com/x', 'must be an https URL'],
    ['https://127.0.0.1/x', 'may not point at a loopback address'],
    ['https://localhost:8443/x', 'may not point at a loopback address'],
    ['https://[::1]/x', 'may not point at a loopback address'],
    ['https://10.1.2.3/x', 'may not point at a private, link-local or metadata address'],
    ['https://172.20.0.1/x', 'may not point at a private, link-local or metadata address'],
    ['https://192.168.1.1/x', 'may not point at a private, link-local or metadata address'],
    ['https://169.254.169.254/latest/meta-data', 'may not point at a private, link-local or metadata address'],
    ['https://[fd12::1]/x', 'may not point at a private, link-local or metadata address'],
    ['https://[::ffff:10.0.0.1]/x', 'may not point at a private, link-local or metadata address'],
    ['https://metadata.google.internal/x', 'may not point at an internal host name'],
    ['https://user:pw@hooks.example.com/x', 'may not carry credentials'],
    ['gopher://hooks.example.com/x', 'must be an http(s) URL'],
    ['not a url', 'is not a URL'],
  ])('production refuses %s', (url, problem) => {
    expect(webhookUrlProblem(url, production)).toBe(problem);
  });

  it('production takes a public https URL; development also a loopback receiver, never a private address', () => {
    expect(webhookUrlProblem('https://hooks.example.com/billing', production)).toBeUndefined();
    expect(webhookUrlProblem('http://127.0.0.1:4000/hooks', development)).toBeUndefined();
    expect(webhookUrlProblem('http://10.0.0.1/hooks', development)).toBeDefined();
  });
});

describe('delivery at connect time (request-filtering-agent)', () => {
  let server: Server;
  let hits = 0;
  let url: string;
  beforeAll(async () => {
    server = createServer((_request, response) => {
      hits += 1;
      response.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('in production a loopback (or any private) address is refused before anything is sent', async () => {
    const sender = new WebhookSender({ timeoutMs: 2_000, allowLoopback: false, excerptBytes: 256 });
    const viaName = await sender.send(url.replace('127.0.0.1', 'localhost'), {}, '{}');
    const viaAddress = await sender.send(url, {}, '{}');
    expect(viaName.errorCode).toBe('address_refused');
    expect(viaAddress.errorCode).toBe('address_refused');
    expect(hits).toBe(0);
    sender.close();
  });

  it('outside production a loopback receiver gets the delivery', async () => {
    const sender = new WebhookSender({ timeoutMs: 2_000, allowLoopback: true, excerptBytes: 256 });
    const result = await sender.send(url, {}, '{}');
    expect(result).toMatchObject({ statusCode: 200, responseExcerpt: 'ok' });
    expect(hits).toBe(1);
    sender.close();
  });
});

describe('signatures (Standard Webhooks)', () => {
  const current = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  const previous = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
  const now = new Date();

  it('signs with every valid secret; each verifies with the standardwebhooks library', () => {
    const secrets = signingSecrets(
      {
        secrets: [
          { secret: current, createdAt: now },
          { secret: previous, createdAt: now, expiresAt: new Date(now.getTime() + 60_000) },
        ],
      },
      now,
    );
    const body = JSON.stringify({ type: 'payment.succeeded', timestamp: now.toISOString(), data: {} });
    const headers = signedHeaders('msg_01TEST', body, secrets, now);
    expect(headers['webhook-signature']!.split(' ')).toHaveLength(2);
    expect(() => new Webhook(current).verify(body, headers)).not.toThrow();
    expect(() => new Webhook(previous).verify(body, headers)).not.toThrow();
    expect(() => new Webhook(current).verify(body.replace('succeeded', 'failed'), headers)).toThrow();
  });

  it('a previous secret past its grace period signs no more', () => {
    const secrets = signingSecrets(
      {
        secrets: [
          { secret: current, createdAt: now },
          { secret: previous, createdAt: now, expiresAt: new Date(now.getTime() - 1) },
        ],
      },
      now,
    );
    expect(secrets).toEqual([current]);
  });
});

describe('catalog and retries', () => {
  it('maps audit actions to event types; denials and reads give none', () => {
    const of = (action: string, outcome = 'success', reason?: string) =>
      webhookEventTypeOf({ action: action as never, outcome, ...(reason ? { reason } : {}) });
    expect(of('payment.succeeded')).toBe('payment.succeeded');
    expect(of('payment.disputed')).toBe('dispute.created');
    expect(of('credit_note.finalized')).toBe('credit_note.issued');
    expect(of('subscription.period_paid')).toBe('subscription.renewed');
    expect(of('subscription.status_changed', 'success', 'active_to_past_due')).toBe('subscription.past_due');
    expect(of('subscription.status_changed', 'success', 'past_due_to_unpaid')).toBe('subscription.unpaid');
    expect(of('subscription.status_changed', 'success', 'active_to_canceled')).toBe('subscription.canceled');
    expect(of('subscription.status_changed', 'success', 'trialing_to_active')).toBe('subscription.updated');
    expect(of('payment_config.read')).toBeUndefined();
    expect(of('payment.succeeded', 'denied')).toBeUndefined();
    expect(WEBHOOK_EVENT_TYPES).toContain('invoice.uncollectible');
  });

  it('the default schedule retries for at least 3 days; tests may shorten it', () => {
    const schedule = loadConfig({}).webhooks.retryScheduleMs;
    expect(schedule.reduce((sum, step) => sum + step, 0)).toBeGreaterThanOrEqual(3 * 24 * 60 * 60 * 1000);
    expect(retryDelayMs(schedule, 1)).toBe(5_000);
    expect(retryDelayMs(schedule, 2)).toBe(300_000);
    expect(retryDelayMs(schedule, 99)).toBe(86_400_000);
    expect(loadConfig({ WEBHOOK_RETRY_SCHEDULE_MS: '100,200' }).webhooks.retryScheduleMs).toEqual([100, 200]);
    expect(() => loadConfig({ WEBHOOK_RETRY_SCHEDULE_MS: 'soon' })).toThrow(/WEBHOOK_RETRY_SCHEDULE_MS/);
  });

  it('loopback receivers: allowed outside production by default, refused in production by default', () => {
    expect(loadConfig({ NODE_ENV: 'test' }).webhooks.allowLoopback).toBe(true);
    expect(loadConfig({ NODE_ENV: 'test', WEBHOOK_ALLOW_LOOPBACK: 'false' }).webhooks.allowLoopback).toBe(false);
  });
});
