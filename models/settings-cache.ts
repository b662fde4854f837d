import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash } from 'node:crypto';
import { deepFreeze } from '../platform/freeze';
import type { Models } from './index';
import type { BillingSettingsRecord } from './billing-settings.model';
import type { StoredPaymentInfo } from './company.model';
import { DocumentTokens, type TokenedKind } from './document-tokens';
import { isShreddedDataError } from './encryption';
import { invoiceSettingsId, type InvoiceSettingsRecord } from './invoice-settings.model';
import { officeRecordId } from './office.model';

/**
 * A company as the charge and invoice paths read it (never its webhook signing secrets), or as the api's webhook
 * route reads it (`keepWebhookSigningSecrets`: the secrets it checks each delivery against).
 */
export interface CachedCompany {
  _id: string;
  name: string;
  shreddedAt?: Date;
  payment_info?: StoredPaymentInfo;
  /** Crypto-shredded: its payment configuration is not read (or could not be decrypted: its data key is gone). */
  paymentInfoShredded?: true;
}
export interface CachedOffice {
  _id: string;
  payment_info?: StoredPaymentInfo;
}

/**
 * The company-level documents a charge, a renewal and an invoice read, each as one read of the whole document (what
 * any of those paths needs of it). A `SettingsCache` answers from memory what Redis' tokens say is current
 * (models/document-tokens.ts); without one, callers read the database as before.
 */
export interface SettingsReads {
  company(companyId: string, officeId?: string): Promise<CachedCompany | null>;
  office(companyId: string, officeId: string): Promise<CachedOffice | null>;
  invoiceSettings(companyId: string, officeId?: string): Promise<InvoiceSettingsRecord | null>;
  billingSettings(companyId: string): Promise<BillingSettingsRecord | null>;
  /**
   * The payer reference of a Stripe Customer (`cus_…`) of the company, as `load` finds it. A Customer record is written
   * once and never changed or removed, so one found is kept; one not found is asked again (it may be made later).
   */
  payerReference(
    companyId: string,
    customer: string,
    load: () => Promise<string | undefined>,
  ): Promise<string | undefined>;
  /**
   * Whether the company is certainly not shredded *now*: Redis' token, read now (not the job's validated one), is
   * still that of a cached record without the shredded mark, so no write of the company (shredding first sets its
   * token) has begun since. False when that cannot be said: the caller asks the database.
   */
  certainlyNotShredded(companyId: string): Promise<boolean>;
}

interface Entry {
  token: string | null;
  doc: unknown;
}

/** What a job has validated: the Redis token of each key as this job's MGET found it. */
type JobTokens = Map<string, string | null>;

export const DEFAULT_SETTINGS_CACHE_ENTRIES = 2_000;

export interface SettingsCacheOptions {
  /** Least recently used entries go past this many (and as many payer references). */
  maxEntries?: number;
  /**
   * Keep configurations' webhook signing secrets (the api's cache, for verifying Stripe's deliveries). Off by
   * default: the worker paths never use them, so a worker process does not hold them.
   */
  keepWebhookSigningSecrets?: boolean;
}

/**
 * A per-process cache of companies (name, shredded mark, payment configuration), offices' payment configuration,
 * invoice settings and billing settings, never stale: an entry is used only while Redis still holds the token it was
 * stored under, and stored only when the document carried the token Redis held before it was read
 * (models/document-tokens.ts says why that is enough, crashes and lost updates included). A job (`inJob`) validates
 * every key of a company it reads (and of the office it names) with one MGET, on its first read of that company.
 * Bounded: least recently used entries go past `maxEntries`. Decrypted gateway keys live here as long as in the
 * gateway's SDK client cache (gateway/stripe-gateway.ts keeps one client, holding the key, per secret key); webhook
 * signing secrets only in the api's cache (`keepWebhookSigningSecrets`), which checks each delivery against them.
 * Cached documents are frozen: a caller cannot change what the next job reads.
 */
export class SettingsCache implements SettingsReads {
  private readonly entries = new Map<string, Entry>();
  private readonly payerReferences = new Map<string, string>();
  private readonly jobs = new AsyncLocalStorage<JobTokens>();

  private readonly maxEntries: number;
  private readonly kept: (info: StoredPaymentInfo) => StoredPaymentInfo;

  constructor(
    private readonly models: Pick<Models, 'Company' | 'Office' | 'InvoiceSettings' | 'BillingSettings'>,
    private readonly tokens: DocumentTokens,
    options: SettingsCacheOptions = {},
  ) {
    this.maxEntries = options.maxEntries ?? DEFAULT_SETTINGS_CACHE_ENTRIES;
    this.kept = options.keepWebhookSigningSecrets ? (info) => info : withoutWebhookSecrets;
  }

  /** Runs one job: its reads validate the cached entries once (one MGET per company), then use them. */
  inJob<T>(work: () => Promise<T>): Promise<T> {
    return this.jobs.run(new Map(), work);
  }

  get size(): number {
    return this.entries.size;
  }

  company(companyId: string, officeId?: string): Promise<CachedCompany | null> {
    return this.read('company', companyId, companyId, officeId, async () => {
      try {
        const found = await this.models.Company.findById(companyId, {
          name: 1,
          shreddedAt: 1,
          payment_info: 1,
          cacheToken: 1,
        }).lean();
        if (!found) return { doc: null, token: null };
        const { cacheToken, payment_info: info, ...rest } = found;
        // Shredded (its key about to go, or gone): its configuration is not used, even while this process could still
        // decrypt it (libmongocrypt keeps a data key up to a minute).
        if (rest.shreddedAt) return { doc: { ...rest, paymentInfoShredded: true as const }, token: cacheToken };
        return { doc: { ...rest, ...(info ? { payment_info: this.kept(info) } : {}) }, token: cacheToken };
      } catch (error) {
        if (!isShreddedDataError(error)) throw error;
        const found = await this.models.Company.findById(companyId, { name: 1, shreddedAt: 1, cacheToken: 1 }).lean();
        if (!found) return { doc: null, token: null };
        const { cacheToken, ...rest } = found;
        return { doc: { ...rest, paymentInfoShredded: true }, token: cacheToken };
      }
    });
  }

  office(companyId: string, officeId: string): Promise<CachedOffice | null> {
    const id = officeRecordId(companyId, officeId);
    return this.read('office', id, companyId, officeId, async () => {
      const found = await this.models.Office.findById(id, { payment_info: 1, cacheToken: 1 }).lean();
      if (!found) return { doc: null, token: null };
      const { cacheToken, payment_info: info, ...rest } = found;
      return { doc: { ...rest, ...(info ? { payment_info: this.kept(info) } : {}) }, token: cacheToken };
    });
  }

  invoiceSettings(companyId: string, officeId?: string): Promise<InvoiceSettingsRecord | null> {
    const id = invoiceSettingsId(companyId, officeId);
    return this.read('invoice_settings', id, companyId, officeId, async () => {
      const found = await this.models.InvoiceSettings.findById(id, { pendingAudit: 0 }).lean();
      if (!found) return { doc: null, token: null };
      const { cacheToken, ...rest } = found;
      return { doc: rest, token: cacheToken };
    });
  }

  billingSettings(companyId: string): Promise<BillingSettingsRecord | null> {
    return this.read('billing_settings', companyId, companyId, undefined, async () => {
      const found = await this.models.BillingSettings.findById(companyId, { pendingAudit: 0 }).lean();
      if (!found) return { doc: null, token: null };
      const { cacheToken, ...rest } = found;
      return { doc: rest, token: cacheToken };
    });
  }

  async payerReference(
    companyId: string,
    customer: string,
    load: () => Promise<string | undefined>,
  ): Promise<string | undefined> {
    const key = createHash('sha256')
      .update(JSON.stringify([companyId, customer]))
      .digest('base64url');
    const known = this.payerReferences.get(key);
    if (known !== undefined) return known;
    const found = await load();
    if (found !== undefined) {
      this.payerReferences.set(key, found);
      while (this.payerReferences.size > this.maxEntries) {
        this.payerReferences.delete(this.payerReferences.keys().next().value!);
      }
    }
    return found;
  }

  async certainlyNotShredded(companyId: string): Promise<boolean> {
    const key = this.tokens.key('company', companyId);
    const entry = this.entries.get(key);
    const company = entry?.doc as CachedCompany | null | undefined;
    if (!entry || entry.token === null || !company || company.shreddedAt || company.paymentInfoShredded) return false;
    try {
      const [now] = await this.tokens.current([key]);
      return now === entry.token;
    } catch {
      return false;
    }
  }

  /** Every key a job may read for this company (and office): validated together, in one MGET. */
  private keysOf(companyId: string, officeId?: string): string[] {
    const keys = [
      this.tokens.key('company', companyId),
      this.tokens.key('invoice_settings', invoiceSettingsId(companyId)),
      this.tokens.key('billing_settings', companyId),
    ];
    if (officeId) {
      keys.push(
        this.tokens.key('office', officeRecordId(companyId, officeId)),
        this.tokens.key('invoice_settings', invoiceSettingsId(companyId, officeId)),
      );
    }
    return keys;
  }

  /** Redis' token for `key` as this job found it (one MGET for the company's keys on the job's first read of it). */
  private async tokenOf(key: string, companyId: string, officeId?: string): Promise<string | null> {
    const job = this.jobs.getStore();
    if (job?.has(key)) return job.get(key)!;
    const wanted = job ? this.keysOf(companyId, officeId).filter((k) => !job.has(k)) : [key];
    if (!wanted.includes(key)) wanted.push(key);
    const values = await this.tokens.current(wanted);
    wanted.forEach((k, i) => job?.set(k, values[i] ?? null));
    return values[wanted.indexOf(key)] ?? null;
  }

  private async read<T>(
    kind: TokenedKind,
    id: string,
    companyId: string,
    officeId: string | undefined,
    load: () => Promise<{ doc: T | null; token: string | null | undefined }>,
  ): Promise<T | null> {
    const key = this.tokens.key(kind, id);
    let current: string | null;
    try {
      current = await this.tokenOf(key, companyId, officeId);
    } catch {
      // Redis unavailable: nothing can be validated; the database answers.
      this.entries.delete(key);
      return (await load()).doc;
    }
    const entry = this.entries.get(key);
    if (entry && entry.token === current) {
      // Most recently used last.
      this.entries.delete(key);
      this.entries.set(key, entry);
      return entry.doc as T | null;
    }
    this.entries.delete(key);
    const { doc, token } = await load();
    // Cached only as written with the token Redis held before this read (absent documents: no token on either side).
    if ((token ?? null) === current) {
      this.entries.set(key, { token: current, doc: deepFreeze(doc) });
      while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    }
    return doc;
  }
}

/**
 * The charge and invoice paths never use a configuration's webhook signing secrets: their caches keep only how many
 * there are (resolving an office's own account asks whether it has them), as placeholders no signature matches.
 */
export const SIGNING_SECRET_NOT_KEPT = 'whsec_not_kept_in_the_settings_cache';

function withoutWebhookSecrets(info: StoredPaymentInfo): StoredPaymentInfo {
  const { webhookSigningSecrets: secrets, ...credentials } = info.credentials ?? {};
  return {
    ...info,
    credentials: {
      ...credentials,
      ...(Array.isArray(secrets) ? { webhookSigningSecrets: secrets.map(() => SIGNING_SECRET_NOT_KEPT) } : {}),
    },
  };
}
