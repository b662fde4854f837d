import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ACCESS_REASON_MIN_LENGTH } from '../../domain/access-policy';
import { INVOICE_STATUSES, type DocumentKind } from '../../domain/invoice';
import { calendarDate, CREDIT_NOTE_ID, INVOICE_ID } from '../../domain/invoice-number';
import { documentAction } from '../../application/invoices/issue-invoice';
import { readInvoiceDocument } from '../../application/invoices/read-invoice-document';
import { voidDocument, type VoidDeps } from '../../application/invoices/void-invoice';
import { transitionEventId } from '../../domain/audit-actions';
import type { Database, Models } from '../../models';
import { invoiceSettingsId } from '../../models/invoice-settings.model';
import type { InvoiceRecord } from '../../models/invoice.model';
import { CUSTOMER_REF_PATTERN } from '../../models/saved-payment-method.model';
import type { AccessGuard } from '../access-guard';
import { sealValue } from '../audit-context';
import { ApiError } from '../errors';
import { rejectIfShredded } from '../payment-access';
import { ENQUEUE_DEADLINE_MS, withDeadline } from '../../platform/deadline';
import { parse, scopeIdSchema } from '../validation';

export interface InvoiceRouteDeps {
  models: Pick<Models, 'Company' | 'Invoice' | 'InvoiceSettings'> & VoidDeps['models'];
  /** Queues a document's rendering (a voided invoice's new version). */
  enqueueRender: (invoiceId: string, version?: number) => Promise<void>;
  documents: Database['invoiceDocuments'];
  encryption: Database['encryption'];
  guard: AccessGuard;
}

/** The two kinds of document, each under its own path, with the same routes. */
const KINDS: readonly { kind: DocumentKind; path: string; id: RegExp; notFound: string }[] = [
  { kind: 'invoice', path: 'invoices', id: INVOICE_ID, notFound: 'invoice_not_found' },
  { kind: 'credit_note', path: 'credit-notes', id: CREDIT_NOTE_ID, notFound: 'credit_note_not_found' },
];

export const companyParams = z.object({ companyId: scopeIdSchema }).strict();

/** Why an invoice is voided: a code, never free text (it is stored in the audit trail). */
const VOID_REASONS = ['issued_in_error', 'duplicate', 'forgiven', 'other'] as const;
export const voidBody = z.object({ reason: z.enum(VOID_REASONS).default('other') }).strict();

/** A page cursor: the last item's creation time and id (ids are hashes, so they do not sort by time). */
const CURSOR = /^(\d{1,15})\.((?:inv|cn)_[0-9a-f]{32})$/;

function encodeCursor(invoice: Pick<InvoiceRecord, '_id' | 'createdAt'>): string {
  return Buffer.from(`${invoice.createdAt.getTime()}.${invoice._id}`).toString('base64url');
}

function decodeCursor(cursor: string): { at: Date; id: string } | undefined {
  const match = CURSOR.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return match ? { at: new Date(Number(match[1])), id: match[2]! } : undefined;
}

export const listQuery = z
  .object({
    status: z.enum(INVOICE_STATUSES).optional(),
    customerRef: z.string().regex(CUSTOMER_REF_PATTERN).optional(),
    officeId: scopeIdSchema.optional(),
    subscriptionId: z
      .string()
      .regex(/^sub_[0-9A-Z]{26}$/)
      .optional(),
    limit: z.coerce.number().int().min(1).max(100).default(25),
    after: z
      .string()
      .max(120)
      .refine((value) => decodeCursor(value) !== undefined, 'must be a nextCursor from a previous page')
      .optional(),
  })
  .strict();

/** What the upstream app sees of an invoice or credit note: amounts, codes and opaque ids (the payer's details stay in the PDF). */
export function presentInvoice(invoice: InvoiceRecord) {
  return {
    id: invoice._id,
    kind: invoice.kind,
    ...(invoice.number ? { number: invoice.number } : {}),
    status: invoice.status,
    ...(invoice.officeId ? { officeId: invoice.officeId } : {}),
    customerRef: invoice.customerRef,
    ...(invoice.subscriptionId ? { subscriptionId: invoice.subscriptionId } : {}),
    ...(invoice.paymentId ? { paymentId: invoice.paymentId } : {}),
    ...(invoice.refundId ? { refundId: invoice.refundId } : {}),
    ...(invoice.creditsInvoiceId ? { creditsInvoiceId: invoice.creditsInvoiceId } : {}),
    currency: invoice.currency,
    lines: invoice.lines.map(({ code, description, quantity, unitAmount, amount }) => ({
      code,
      description,
      quantity,
      unitAmount,
      amount,
    })),
    subtotal: invoice.subtotal,
    total: invoice.total,
    amountPaid: invoice.amountPaid,
    amountDue: invoice.amountDue,
    ...(invoice.period
      ? { period: { start: invoice.period.start.toISOString(), end: invoice.period.end.toISOString() } }
      : {}),
    issuedOn: calendarDate(invoice.issuedAt, invoice.timeZone),
    ...(invoice.finalizedAt ? { finalizedAt: invoice.finalizedAt.toISOString() } : {}),
    ...(invoice.paidAt ? { paidAt: invoice.paidAt.toISOString() } : {}),
    ...(invoice.voidedAt ? { voidedAt: invoice.voidedAt.toISOString() } : {}),
    document: invoice.document
      ? { status: 'stored', sha256: invoice.document.sha256, size: invoice.document.size }
      : { status: 'pending' },
    createdAt: invoice.createdAt.toISOString(),
  };
}

/** The path of one invoice or credit note (its id pattern per kind); the contract (api/contracts/invoices.ts) shares it. */
export const documentParams = (id: RegExp) =>
  z.object({ companyId: scopeIdSchema, invoiceId: z.string().regex(id) }).strict();

export function registerInvoiceRoutes(app: FastifyInstance, deps: InvoiceRouteDeps): void {
  const { Invoice, InvoiceSettings } = deps.models;
  const { guard } = deps;

  for (const { kind, path, id, notFound } of KINDS) {
    const params = documentParams(id);

    /** The document, after the caller was authorized for its office; 404 for none of this company's. */
    const authorized = async (
      request: FastifyRequest,
      permission: 'invoices:read' | 'invoices:download',
    ): Promise<InvoiceRecord> => {
      const { companyId, invoiceId } = parse(params, request.params);
      const invoice = await Invoice.findOne({ _id: invoiceId, companyId, kind }).lean();
      await guard.authorize(request, permission, {
        companyId,
        officeId: invoice?.officeId,
        resource: { type: kind, id: invoiceId },
      });
      if (!invoice) throw new ApiError(404, notFound, `no such ${kind.replace('_', ' ')}`);
      return invoice;
    };

    app.get(`/v1/companies/:companyId/${path}`, async (request) => {
      const { companyId } = parse(companyParams, request.params);
      const query = parse(listQuery, request.query);
      const scope = await guard.authorizeList(request, 'invoices:read', { companyId, officeId: query.officeId });
      const filter: Record<string, unknown> = { companyId, kind };
      if (scope.officeIds) filter.officeId = { $in: scope.officeIds };
      if (query.status) filter.status = query.status;
      if (query.customerRef) filter.customerRef = query.customerRef;
      if (query.subscriptionId) filter.subscriptionId = query.subscriptionId;
      const cursor = query.after ? decodeCursor(query.after) : undefined;
      if (cursor) {
        filter.$or = [{ createdAt: { $lt: cursor.at } }, { createdAt: cursor.at, _id: { $lt: cursor.id } }];
      }
      const page = await Invoice.find(filter)
        .sort({ createdAt: -1, _id: -1 })
        .limit(query.limit + 1)
        .lean();
      const items = page.slice(0, query.limit);
      const last = items[items.length - 1];
      return {
        items: items.map(presentInvoice),
        nextCursor: page.length > query.limit && last ? encodeCursor(last) : null,
      };
    });

    if (kind === 'invoice') {
      /**
       * Voids an open or uncollectible invoice (as Stripe allows; a paid one is refunded instead, with a credit note).
       * `refunds:create`: forgiving what a payer owes moves money like a refund does. Its number stays used.
       */
      app.post(`/v1/companies/:companyId/${path}/:invoiceId/void`, { bodyLimit: 1024 }, async (request) => {
        const { companyId, invoiceId } = parse(params, request.params);
        const body = parse(voidBody, request.body ?? {});
        const found = await Invoice.findOne({ _id: invoiceId, companyId, kind }, { officeId: 1 }).lean();
        await guard.authorize(request, 'refunds:create', {
          companyId,
          officeId: found?.officeId,
          resource: { type: kind, id: invoiceId },
        });
        if (!found) throw new ApiError(404, notFound, 'no such invoice');
        if (!(await rejectIfShredded(deps.models, companyId))) {
          throw new ApiError(404, 'company_not_found', 'no such company');
        }
        let queued = true;
        const result = await voidDocument(
          {
            models: deps.models,
            // Bounded: with Redis down the void still answers (the outbox sweep queues a document left pending).
            enqueueRender: (id, version) =>
              withDeadline(deps.enqueueRender(id, version), ENQUEUE_DEADLINE_MS, 'render enqueue'),
            logger: request.log as unknown as VoidDeps['logger'],
            enqueueAudit: async (event) => {
              queued = await guard.send(request, [event]);
              if (!queued) throw new Error('audit not queued');
            },
          },
          { invoiceId, companyId },
          ['open', 'uncollectible'],
          (invoice, before) =>
            guard.prepare(
              request,
              {
                companyId,
                ...(invoice.officeId ? { officeId: invoice.officeId } : {}),
                action: 'invoice.voided',
                resource: { type: kind, id: invoice._id },
                permission: 'refunds:create',
                reason: body.reason,
                changes: [{ field: 'status', before, after: 'void' }],
              },
              transitionEventId('invoice.voided', invoice._id),
            ),
        ).catch((error: unknown) => {
          if (!queued) {
            throw new ApiError(
              503,
              'audit_unavailable',
              'the invoice is void, but its audit event could not be queued; it is kept with it and the outbox sweep records it (no retry is needed)',
            );
          }
          throw error;
        });
        if (result.outcome === 'not_found') throw new ApiError(404, notFound, 'no such invoice');
        if (result.outcome === 'not_voidable') {
          throw new ApiError(
            409,
            'invoice_not_voidable',
            `a ${result.status} invoice cannot be voided (only open or uncollectible ones; a paid one is refunded)`,
          );
        }
        return presentInvoice(result.invoice);
      });
    }

    app.get(`/v1/companies/:companyId/${path}/:invoiceId`, async (request) =>
      presentInvoice(await authorized(request, 'invoices:read')),
    );

    app.get(`/v1/companies/:companyId/${path}/:invoiceId/pdf`, async (request, reply) => {
      const invoice = await authorized(request, 'invoices:download');
      const { companyId } = invoice;
      await rejectIfShredded(deps.models, companyId);
      const settings = await InvoiceSettings.findById(invoiceSettingsId(companyId), {
        requireDownloadReason: 1,
      }).lean();
      const header = request.headers['x-access-reason'];
      const reason = typeof header === 'string' ? header.trim() : '';
      if (settings?.requireDownloadReason && reason.length < ACCESS_REASON_MIN_LENGTH) {
        throw new ApiError(
          400,
          'access_reason_required',
          `this company requires an X-Access-Reason header (${ACCESS_REASON_MIN_LENGTH}+ characters) to download documents`,
        );
      }
      const resource = { type: kind, id: invoice._id };
      const scope = { companyId, ...(invoice.officeId ? { officeId: invoice.officeId } : {}), resource };
      const read = await readInvoiceDocument(deps, invoice);
      if (read.outcome === 'not_rendered') {
        throw new ApiError(409, 'document_not_ready', 'the document is being rendered; try again shortly');
      }
      if (read.outcome === 'integrity_failed') {
        request.log.error({ invoiceId: invoice._id, check: read.check }, 'stored document failed its integrity check');
        try {
          await guard.record(request, {
            ...scope,
            action: documentAction(kind, 'integrity_failed'),
            outcome: 'failure',
            severity: 'high',
            reason: 'document_integrity_failed',
            permission: 'invoices:download',
            changes: [{ field: 'check', before: null, after: read.check }],
          });
        } catch (error) {
          // Refused either way; the error log above is the record of last resort.
          request.log.error({ err: error, invoiceId: invoice._id }, 'integrity failure could not be audited');
        }
        throw new ApiError(
          500,
          'document_integrity_failed',
          'the stored document does not match the hash recorded when it was rendered; it was not sent',
        );
      }
      // Audited, with the actor (and the reason, sealed), before the bytes go out: 503 and nothing sent otherwise.
      await guard.record(request, {
        ...scope,
        action: documentAction(kind, 'downloaded'),
        permission: 'invoices:download',
        ...(reason ? { sealed: { accessReason: await sealValue(deps.encryption, companyId, reason) } } : {}),
      });
      return reply
        .header('content-type', 'application/pdf')
        .header('content-disposition', `attachment; filename="${invoice.number ?? invoice._id}.pdf"`)
        .header('x-content-sha256', invoice.document?.sha256 ?? '')
        .send(read.pdf);
    });
  }
}
