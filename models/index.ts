import { createDisputeRevisionModel, type DisputeRevisionModel } from './dispute-revision.model';
import { MongoClient } from 'mongodb';
import type { Connection } from 'mongoose';
import type { AppConfig } from '../platform/config';
import { createAuditEventModel, type AuditEventModel } from './audit-event.model';
import { AuditTrail } from './audit-trail';
import { createCompanyModel, type CompanyModel } from './company.model';
import { connectDatabase } from './connection';
import { DocumentTokens, registerDocumentTokens } from './document-tokens';
import { DocumentWriteLeases, registerDocumentWriteLeases } from './serialized-writes';
import { createRedisConnection, type RedisClient } from '../platform/redis';
import { FieldEncryption, kmsProvidersFor, kmsTlsOptionsFor, localMasterKeyFor } from './encryption';
import { createOfficeModel, type OfficeModel } from './office.model';
import { createPaymentModel, type PaymentModel } from './payment.model';
import { createRefundLedgerModel, type RefundLedgerModel } from './refund-ledger.model';
import { createRefundModel, type RefundModel } from './refund.model';
import { createBillingSettingsModel, type BillingSettingsModel } from './billing-settings.model';
import { createPlanModel, type PlanModel } from './plan.model';
import { createSavedPaymentMethodModel, type SavedPaymentMethodModel } from './saved-payment-method.model';
import { createSetupIntentModel, type SetupIntentModel } from './setup-intent.model';
import { createStripeCustomerModel, type StripeCustomerModel } from './stripe-customer.model';
import {
  createSubscriptionModel,
  createSubscriptionPeriodModel,
  type SubscriptionModel,
  type SubscriptionPeriodModel,
} from './subscription.model';
import { createTestClockModel, type TestClockModel } from './test-clock.model';
import { createSweepMarkModel, type SweepMarkModel } from './sweep-mark.model';
import { InvoiceDocumentStore } from './invoice-document';
import { createInvoiceModel, type InvoiceModel } from './invoice.model';
import { createInvoiceNumberModel, InvoiceNumbering, type InvoiceNumberModel } from './invoice-number.model';
import { createInvoiceSettingsModel, type InvoiceSettingsModel } from './invoice-settings.model';
import { createPayerProfileModel, type PayerProfileModel } from './payer-profile.model';
import {
  createWebhookEventModel,
  createWebhookReplayClaimModel,
  type WebhookEventModel,
  type WebhookReplayClaimModel,
} from './webhook-event.model';
import {
  createOutgoingEventModel,
  createWebhookDeliveryModel,
  createWebhookEndpointModel,
  type OutgoingEventModel,
  type WebhookDeliveryModel,
  type WebhookEndpointModel,
} from './outgoing-webhook.model';

export interface Models {
  Company: CompanyModel;
  Office: OfficeModel;
  Payment: PaymentModel;
  Refund: RefundModel;
  RefundLedger: RefundLedgerModel;
  AuditEvent: AuditEventModel;
  WebhookEvent: WebhookEventModel;
  WebhookReplayClaim: WebhookReplayClaimModel;
  DisputeRevision: DisputeRevisionModel;
  SavedPaymentMethod: SavedPaymentMethodModel;
  StripeCustomer: StripeCustomerModel;
  SetupIntent: SetupIntentModel;
  Plan: PlanModel;
  Subscription: SubscriptionModel;
  SubscriptionPeriod: SubscriptionPeriodModel;
  TestClock: TestClockModel;
  BillingSettings: BillingSettingsModel;
  SweepMark: SweepMarkModel;
  Invoice: InvoiceModel;
  InvoiceNumber: InvoiceNumberModel;
  InvoiceSettings: InvoiceSettingsModel;
  PayerProfile: PayerProfileModel;
  WebhookEndpoint: WebhookEndpointModel;
  OutgoingEvent: OutgoingEventModel;
  WebhookDelivery: WebhookDeliveryModel;
}

export interface Database {
  connection: Connection;
  encryption: FieldEncryption;
  models: Models;
  /** A driver client without decryption: for integrity work on ciphertext as stored (the audit chain). */
  plainClient: MongoClient;
  auditTrail: AuditTrail;
  /** Rendered invoices and credit notes, as stored (ciphertext), through the client without decryption. */
  invoiceDocuments: InvoiceDocumentStore;
  /** This process's invoice numbering (it caches the heads it wrote). */
  invoiceNumbering: InvoiceNumbering;
  /** Cache tokens of companies, offices, invoice and billing settings (every write of one sets its token first). */
  documentTokens: DocumentTokens;
  close(): Promise<void>;
}

export function createModels(connection: Connection): Models {
  return {
    Company: createCompanyModel(connection),
    Office: createOfficeModel(connection),
    Payment: createPaymentModel(connection),
    Refund: createRefundModel(connection),
    RefundLedger: createRefundLedgerModel(connection),
    AuditEvent: createAuditEventModel(connection),
    WebhookEvent: createWebhookEventModel(connection),
    WebhookReplayClaim: createWebhookReplayClaimModel(connection),
    DisputeRevision: createDisputeRevisionModel(connection),
    SavedPaymentMethod: createSavedPaymentMethodModel(connection),
    StripeCustomer: createStripeCustomerModel(connection),
    SetupIntent: createSetupIntentModel(connection),
    Plan: createPlanModel(connection),
    Subscription: createSubscriptionModel(connection),
    SubscriptionPeriod: createSubscriptionPeriodModel(connection),
    TestClock: createTestClockModel(connection),
    BillingSettings: createBillingSettingsModel(connection),
    SweepMark: createSweepMarkModel(connection),
    Invoice: createInvoiceModel(connection),
    InvoiceNumber: createInvoiceNumberModel(connection),
    InvoiceSettings: createInvoiceSettingsModel(connection),
    PayerProfile: createPayerProfileModel(connection),
    WebhookEndpoint: createWebhookEndpointModel(connection),
    OutgoingEvent: createOutgoingEventModel(connection),
    WebhookDelivery: createWebhookDeliveryModel(connection),
  };
}

/** Connects, wires encryption and models, and makes sure indexes exist (idempotent). */
export async function openDatabase(
  config: Pick<AppConfig, 'mongodbUri' | 'keyVaultNamespace' | 'kms' | 'env' | 'redisUrl' | 'queuePrefix'>,
): Promise<Database> {
  const localKey = localMasterKeyFor(config.kms, config.env !== 'production');
  const kmsProviders = kmsProvidersFor(config.kms, localKey);
  const connection = await connectDatabase(
    config.mongodbUri,
    config.keyVaultNamespace,
    kmsProviders,
    kmsTlsOptionsFor(config.kms),
  );
  const models = createModels(connection);
  // Fails fast while Redis is down (a settings write is refused, never stored without its token).
  const tokenRedis = await connectTokenRedis(config.redisUrl);
  const documentTokens = new DocumentTokens(tokenRedis, config.queuePrefix);
  registerDocumentTokens(connection, documentTokens);
  if (!(await updatesAreAtomic(connection))) {
    registerDocumentWriteLeases(connection, new DocumentWriteLeases(tokenRedis, config.queuePrefix));
  }
  const encryption = new FieldEncryption(
    connection.getClient(),
    config.kms,
    kmsProviders,
    config.keyVaultNamespace,
    async (companyId) => (await models.Company.exists({ _id: companyId, shreddedAt: { $exists: true } })) !== null,
  );
  const plainClient = await MongoClient.connect(config.mongodbUri, { serverSelectionTimeoutMS: 10_000 });
  const auditTrail = new AuditTrail(plainClient.db(connection.name));
  await encryption.ensureKeyVaultIndex();
  await Promise.all(Object.values(models).map((model: Models[keyof Models]) => model.createIndexes()));
  await auditTrail.ensureIndexes();
  return {
    connection,
    encryption,
    models,
    plainClient,
    auditTrail,
    invoiceDocuments: new InvoiceDocumentStore(plainClient.db(connection.name)),
    invoiceNumbering: new InvoiceNumbering(models.InvoiceNumber),
    documentTokens,
    close: async () => {
      await Promise.all([connection.close(), plainClient.close(), tokenRedis.quit().catch(() => undefined)]);
    },
  };
}

/** MongoDB updates one document atomically; FerretDB (it says so in buildInfo) does not (models/serialized-writes.ts). */
async function updatesAreAtomic(connection: Connection): Promise<boolean> {
  const build = await connection.db!.admin().command({ buildInfo: 1 });
  return build.ferretdbVersion === undefined;
}

/**
 * The connection for document tokens: the api's fail-fast options, given up to 10 s to be ready. Without Redis the
 * database still opens (reads work); a write of a tokened document is refused until Redis is back.
 */
async function connectTokenRedis(url: string): Promise<RedisClient> {
  const redis = createRedisConnection(url, 'api');
  redis.on('error', () => undefined);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 10_000);
    redis.once('ready', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return redis;
}
