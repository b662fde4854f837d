#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { MongoClient } from 'mongodb';
import { PERMISSIONS, ROLES } from '../domain/access-policy';
import { createInterface } from 'node:readline/promises';
import { userInfo } from 'node:os';
import { ulid } from '../platform/ids';
import { devAttestation } from '../models/companies';
import { createCompanyAudited, shredCompanyAudited } from '../application/companies/company-lifecycle';
import { createRedisConnection } from '../platform/redis';
import { revokeDashboardSessions } from '../platform/dashboard-sessions';
import { PLATFORM_AUDIT_SCOPE } from '../domain/audit-actions';
import { closeQueues, createQueues, type Queues } from '../queues';
import { enqueueAuditEvent } from '../queues/audit.queue';
import { openDatabase } from '../models';
import { formatRotationReport, rotateMasterKey } from '../application/keys/rotate-master-key';
import { replayReasonSchema, replayWebhookEvent } from '../application/webhooks/replay-event';
import { loadAnchorSigner } from '../models/anchor-key';
import { loadConfig, type AppConfig } from '../platform/config';
import { mintDevToken } from '../devtools/tokens';
import { confirmSetupIntentLocally } from '../devtools/confirm-setup-intent';
import { seedDemo } from '../devtools/seed-demo';
import { createHipaaBillingClient } from '../clients/typescript/src';

const USAGE = `usage: hipaa-billing <command> [options]

commands:
  company create --name NAME [--id ID] [--stripe-secret-key sk_test_…] [--attest-exempt-1179 RATIONALE]
      create a company; its Stripe secret key is stored encrypted; without an attestation
      (here or via the API) it cannot take payments
  token --company ID [--roles service] [--permissions payments:create,payments:read]
        [--subject NAME] [--offices ID,ID] [--ttl-seconds 900]
      mint a development token (HS256; refused when tokens are verified by public key)
  dev-setup
      create the demo company (Stripe test key for stripe-mock, a webhook signing secret) and print a token for it
  seed demo [--api http://127.0.0.1:3000]
      development only: fill the demo company (dev-setup) with offices' plans, payers, subscriptions on a
      test clock (one in dunning), payments and a refund, through the running api with the typed client;
      the api and workers must be running (npm run dev)
  dev-confirm-setup-intent --company ID [--card pm_card_visa] [--api http://127.0.0.1:3000] SETUP_INTENT_ID
      development only: confirm a SetupIntent as the payer's browser would and deliver Stripe's signed
      setup_intent.succeeded to the api, which saves the card
  company shred ID [--confirm ID]
      destroy the company's data key (crypto-shredding); asks you to type the id again
  keys rotate
      re-wrap every data key under the configured KMS master key (KMS_PROVIDER), then prove each
      unwraps with it alone; the previous provider's credentials must still be configured; exit 1
      if any key does not verify
  dashboard-sessions revoke --subject SUBJECT
      end the subject's dashboard session on every api process at once (audited as dashboard.sessions_revoked)
  audit verify [--company ID]
      recompute the audit hash chain(s) and check the signed anchors; exit 1 at the first broken link
  audit public-key
      print the public key that verifies audit anchor signatures (PEM)
  webhook-events replay --company ID --reason CODE EVENT_ID
      process a stored Stripe event again (one applied, ignored or failed is reset to received;
      one not processed yet is only queued); audited as webhook.replayed with the reason code`;

function list<T extends string>(value: string | undefined, allowed: readonly T[], what: string): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').filter(Boolean);
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new Error(`unknown ${what} "${item}" (one of: ${allowed.join(', ')})`);
  }
  return items as T[];
}

async function ask(question: string): Promise<string> {
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await prompt.question(question);
  } finally {
    prompt.close();
  }
}

/** Runs `fn` with the queues on a Redis connection of their own, then closes both. */
async function withQueues<T>(config: AppConfig, fn: (queues: Queues) => Promise<T>): Promise<T> {
  const redis = createRedisConnection(config.redisUrl, 'worker');
  const queues = createQueues(redis, config.queuePrefix);
  try {
    return await fn(queues);
  } finally {
    // Disconnect first: closing a queue whose Redis is gone would wait for it.
    redis.disconnect();
    await closeQueues(queues);
  }
}

export const DEMO_COMPANY_ID = 'co_demo';
const DEMO_STRIPE_KEY = 'sk_test_demoStripeMock';
const DEMO_WEBHOOK_SECRET = 'whsec_demoDevelopmentOnly';

async function main(argv: string[]): Promise<void> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      id: { type: 'string' },
      'stripe-secret-key': { type: 'string' },
      'attest-exempt-1179': { type: 'string' },
      company: { type: 'string' },
      roles: { type: 'string' },
      permissions: { type: 'string' },
      subject: { type: 'string' },
      offices: { type: 'string' },
      'ttl-seconds': { type: 'string' },
      confirm: { type: 'string' },
      reason: { type: 'string' },
      card: { type: 'string' },
      api: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  const leading = positionals.slice(0, 2).join(' ');
  const command = ['company shred', 'webhook-events replay'].includes(leading) ? leading : positionals.join(' ');
  if (values.help || command === '') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const config = loadConfig();

  if (command === 'token') {
    if (!values.company) throw new Error('token needs --company');
    const token = await mintDevToken(
      config,
      {
        companyId: values.company,
        roles: list(values.roles, ROLES, 'role') ?? ['service'],
        permissions: list(values.permissions, PERMISSIONS, 'permission'),
        subject: values.subject,
        officeIds: values.offices?.split(','),
      },
      Number(values['ttl-seconds'] ?? 900),
    );
    process.stdout.write(`${token}\n`);
    return;
  }

  if (command === 'company create' || command === 'dev-setup') {
    const demo = command === 'dev-setup';
    // Setup runs before api and workers (compose): it creates the development anchor key so they never race to.
    if (demo) loadAnchorSigner(config.audit.anchorKeyFile, config.env !== 'production');
    if (!demo && !values.name) throw new Error('company create needs --name');
    const db = await openDatabase(config);
    try {
      const actor = { type: 'user' as const, id: `cli-${userInfo().username}` };
      const input = {
        id: demo ? DEMO_COMPANY_ID : values.id,
        name: demo ? 'Demo Family Practice' : (values.name ?? ''),
        stripeSecretKey: demo ? DEMO_STRIPE_KEY : values['stripe-secret-key'],
        ...(demo ? { webhookSigningSecrets: [DEMO_WEBHOOK_SECRET] } : {}),
        compliance: demo
          ? devAttestation('dev-setup')
          : values['attest-exempt-1179']
            ? {
                status: 'exempt_1179' as const,
                rationale: values['attest-exempt-1179'],
                attestedBy: actor.id,
                attestedAt: new Date().toISOString(),
              }
            : undefined,
      };
      const id = await withQueues(config, (queues) =>
        createCompanyAudited({ db, enqueueAudit: (event) => enqueueAuditEvent(queues.audit, event) }, input, actor),
      );
      if (demo) {
        const token = await mintDevToken(config, { companyId: id, roles: ['service'] });
        process.stdout.write(`export COMPANY=${id}\nexport TOKEN=${token}\n`);
      } else {
        process.stdout.write(`${id}\n`);
      }
    } finally {
      await db.close();
    }
    return;
  }
  if (command === 'seed demo') {
    if (config.env === 'production') throw new Error('seed demo is for development only');
    const db = await openDatabase(config);
    try {
      // Through the running api with the typed client, as an upstream app would (devtools/seed-demo.ts).
      const client = createHipaaBillingClient({
        baseUrl: values.api ?? `http://127.0.0.1:${config.http.port}`,
        token: () =>
          mintDevToken(config, { companyId: DEMO_COMPANY_ID, roles: ['company_admin'], subject: 'demo-seed' }),
      });
      await seedDemo({ db, client, log: (line) => process.stdout.write(`${line}\n`) }, DEMO_COMPANY_ID);
    } finally {
      await db.close();
    }
    return;
  }

  if (positionals[0] === 'dev-confirm-setup-intent') {
    const setupIntentId = positionals[1];
    if (!values.company || !setupIntentId)
      throw new Error('dev-confirm-setup-intent needs --company ID and the seti_… id');
    if (config.env === 'production') throw new Error('dev-confirm-setup-intent is for development only');
    const db = await openDatabase(config);
    try {
      const delivered = await confirmSetupIntentLocally(db, {
        companyId: values.company,
        setupIntentId,
        paymentMethod: values.card ?? 'pm_card_visa',
        apiUrl: values.api ?? `http://127.0.0.1:${config.http.port}`,
      });
      if (delivered.status !== 200) throw new Error(`the api answered ${delivered.status}: ${delivered.body}`);
      process.stdout.write(`setup_intent.succeeded delivered for ${setupIntentId}; the card is saved in a moment\n`);
    } finally {
      await db.close();
    }
    return;
  }

  if (command === 'dashboard-sessions revoke') {
    if (!values.subject) throw new Error('dashboard-sessions revoke needs --subject');
    const subject = values.subject;
    const revoked = await withQueues(config, async (queues) => {
      const redis = createRedisConnection(config.redisUrl, 'worker');
      try {
        const ended = await revokeDashboardSessions(redis, config.queuePrefix, subject);
        await enqueueAuditEvent(queues.audit, {
          eventId: `evt-dashboard-revoked-${ulid()}`,
          companyId: PLATFORM_AUDIT_SCOPE,
          action: 'dashboard.sessions_revoked',
          outcome: 'success',
          actor: { type: 'user', id: `cli-${userInfo().username}` },
          resource: { type: 'dashboard_subject', id: subject },
          reason: ended ? 'session_ended' : 'no_session',
          occurredAt: new Date().toISOString(),
        });
        return ended;
      } finally {
        redis.disconnect();
      }
    });
    process.stdout.write(`${subject}: ${revoked ? 'dashboard session ended' : 'no dashboard session'}\n`);
    return;
  }

  if (command === 'company shred') {
    const companyId = positionals[2];
    if (!companyId) throw new Error('company shred needs the company id');
    const typed =
      values.confirm ??
      (await ask(`This destroys every encrypted value of ${companyId} for good. Type the company id to confirm: `));
    if (typed.trim() !== companyId) throw new Error('confirmation did not match; nothing was changed');
    const db = await openDatabase(config);
    try {
      const result = await withQueues(config, (queues) =>
        shredCompanyAudited({ db, enqueueAudit: (event) => enqueueAuditEvent(queues.audit, event) }, companyId, {
          type: 'user',
          id: `cli-${userInfo().username}`,
        }),
      );
      if (result.outcome === 'not_found') throw new Error(`no company ${companyId}`);
      process.stdout.write(
        `${companyId}: data key ${result.keyWasPresent ? 'destroyed' : 'was already gone'}; encrypted fields are unreadable from now on\n`,
      );
    } finally {
      await db.close();
    }
    return;
  }

  if (command === 'webhook-events replay') {
    const eventId = positionals[2];
    if (!values.company || !eventId) throw new Error('webhook-events replay needs --company ID and the event id');
    const reason = replayReasonSchema.safeParse(values.reason);
    if (!reason.success)
      throw new Error('webhook-events replay needs --reason CODE (a-z, 0-9, _: why, for the audit trail)');
    const companyId = values.company;
    const db = await openDatabase(config);
    try {
      const result = await withQueues(config, (queues) =>
        replayWebhookEvent(
          { models: db.models, queues },
          {
            companyId,
            eventId,
            reason: reason.data,
            actor: { type: 'user', id: `cli-${userInfo().username}` },
          },
        ),
      );
      if (result.outcome === 'not_found') throw new Error(`no webhook event ${eventId} for company ${companyId}`);
      if (result.outcome === 'shredded')
        throw new Error(`${companyId} was crypto-shredded; its events cannot be replayed`);
      process.stdout.write(`${JSON.stringify(result.event)}\n`);
    } finally {
      await db.close();
    }
    return;
  }

  if (command === 'keys rotate') {
    const client = await MongoClient.connect(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
    try {
      const report = await withQueues(config, (queues) =>
        rotateMasterKey(
          { client, kms: config.kms, keyVaultNamespace: config.keyVaultNamespace, queues },
          { runId: `rot_${ulid()}`, actor: { type: 'user', id: `cli-${userInfo().username}` } },
        ),
      );
      process.stdout.write(formatRotationReport(report));
      if (report.unverified.length > 0) process.exitCode = 1;
    } finally {
      await client.close();
    }
    return;
  }

  if (command === 'audit public-key') {
    const signer = loadAnchorSigner(config.audit.anchorKeyFile, config.env !== 'production');
    process.stdout.write(signer.publicKey.export({ type: 'spki', format: 'pem' }).toString());
    return;
  }

  if (command === 'audit verify') {
    const signer = loadAnchorSigner(config.audit.anchorKeyFile, false);
    const db = await openDatabase(config);
    try {
      const companies = values.company ? [values.company] : await db.auditTrail.companies();
      let broken = 0;
      for (const companyId of companies) {
        const report = await db.auditTrail.verify(companyId, signer.publicKey);
        process.stdout.write(`${JSON.stringify(report)}\n`);
        if (!report.ok) broken += 1;
      }
      if (broken > 0) process.exitCode = 1;
    } finally {
      await db.close();
    }
    return;
  }
  throw new Error(`unknown command "${command}"\n${USAGE}`);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
