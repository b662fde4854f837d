import { z } from 'zod';
import { INVOICE_STATUSES, PHI_LEVELS, type DocumentKind } from '../../domain/invoice';
import { CREDIT_NOTE_ID, INVOICE_ID } from '../../domain/invoice-number';
import {
  companyInvoiceSettingsSchema,
  LETTERHEAD_STYLES,
  officeInvoiceSettingsSchema,
  payerProfileSchema,
} from '../../domain/invoice-settings';
import { companyParams as settingsCompanyParams, officeParams, payerParams } from '../routes/invoice-settings';
import { companyParams, documentParams, listQuery, voidBody } from '../routes/invoices';
import {
  currencyCode,
  failure,
  minorAmount,
  type OperationSpec,
  timestamp,
  companyNotFound,
  withExamples,
} from '../openapi/spec';
import { REQUEST_EXAMPLES } from './examples';

/** An invoice or credit note (presentInvoice): amounts, codes and opaque ids; the payer's details stay in the PDF. */
const documentView = (kind: DocumentKind, id: RegExp) =>
  z.strictObject({
    id: z.string().regex(id),
    kind: z.literal(kind),
    number: z
      .string()
      .optional()
      .meta({ description: 'Assigned at finalization, e.g. DFP-2026-000123 (credit notes DFP-CN-2026-000004).' }),
    status: z.enum(INVOICE_STATUSES),
    officeId: z.string().optional(),
    customerRef: z.string(),
    subscriptionId: z.string().optional(),
    paymentId: z.string().optional(),
    refundId: z.string().optional(),
    creditsInvoiceId: z.string().optional().meta({ description: "A credit note's invoice." }),
    currency: currencyCode,
    lines: z.array(
      z.strictObject({
        code: z.string(),
        description: z.string(),
        quantity: z.number().positive(),
        unitAmount: minorAmount,
        amount: minorAmount,
      }),
    ),
    subtotal: minorAmount,
    total: minorAmount,
    amountPaid: minorAmount,
    amountDue: minorAmount,
    period: z
      .strictObject({ start: timestamp, end: timestamp })
      .optional()
      .meta({ description: "A subscription period's dates, for an invoice of one." }),
    issuedOn: z.string().meta({ format: 'date', description: "In the company's time zone." }),
    finalizedAt: timestamp.optional(),
    paidAt: timestamp.optional(),
    voidedAt: timestamp.optional(),
    document: z
      .discriminatedUnion('status', [
        z.strictObject({
          status: z.literal('stored'),
          sha256: z.string().regex(/^[0-9a-f]{64}$/),
          size: z.number().int().positive(),
        }),
        z.strictObject({ status: z.literal('pending') }),
      ])
      .meta({ description: 'The PDF: `pending` until it is rendered and stored.' }),
    createdAt: timestamp,
  });

const letterhead = z.strictObject({ name: z.string(), address: z.array(z.string()) });

/** The settings a document is issued with (effectiveInvoiceSettings): stored values, defaults for the rest. */
const effectiveSettings = {
  numberPrefix: z.string(),
  phiLevel: z.enum(PHI_LEVELS),
  letterheadStyle: z.enum(LETTERHEAD_STYLES),
  letterhead,
  requireDownloadReason: z.boolean(),
  timeZone: z.string().optional(),
};

const TAG = 'Invoices';
const READ = 'invoices:read';
const SETTINGS = 'payment_config:write';

const companyShredded = failure("The company's data was crypto-shredded.", 'company_shredded');
/** A settings change saved whose audit event waits for the outbox sweep. */
const auditPending = failure(
  'The change is saved, but its audit event waits for the outbox sweep (no retry is needed).',
  'audit_unavailable',
);

/** The two kinds of document, each under its own path, with the same routes (api/routes/invoices.ts). */
const KINDS = [
  {
    kind: 'invoice',
    path: 'invoices',
    id: INVOICE_ID,
    notFound: 'invoice_not_found',
    name: 'invoice',
    plural: 'invoices',
    operation: 'Invoice',
  },
  {
    kind: 'credit_note',
    path: 'credit-notes',
    id: CREDIT_NOTE_ID,
    notFound: 'credit_note_not_found',
    name: 'credit note',
    plural: 'credit notes',
    operation: 'CreditNote',
  },
] as const;

function documentOperations({ kind, path, id, notFound, name, plural, operation }: (typeof KINDS)[number]) {
  const params = documentParams(id);
  const view = documentView(kind, id);
  const notFoundHere = failure(`No such ${name} in this company.`, notFound);
  const operations: OperationSpec[] = [
    {
      method: 'get',
      route: `/v1/companies/:companyId/${path}`,
      operationId: `list${operation}s`,
      summary: `List the company's ${plural}`,
      description: `Newest first, filtered; an office-scoped token sees its offices’ ${plural} only.`,
      tag: TAG,
      permission: READ,
      params: companyParams,
      query: listQuery,
      responses: {
        200: {
          description: `A page of ${plural}; \`nextCursor\` is the value to pass as \`after\` (null on the last page).`,
          schema: z.strictObject({ items: z.array(view), nextCursor: z.string().nullable() }),
        },
      },
    },
  ];
  if (kind === 'invoice') {
    operations.push({
      method: 'post',
      route: `/v1/companies/:companyId/${path}/:invoiceId/void`,
      operationId: 'voidInvoice',
      summary: 'Void an open or uncollectible invoice',
      description:
        'As Stripe allows: a paid invoice is refunded instead, with a credit note. Its number stays used; its document is rendered again, stamped VOID. `refunds:create`: forgiving what a payer owes moves money like a refund does. Audited (`invoice.voided`, with the reason).',
      tag: TAG,
      permission: 'refunds:create',
      params,
      body: withExamples(voidBody, ...REQUEST_EXAMPLES.voidInvoice),
      responses: {
        200: { description: 'The invoice, void (also when it already was).', schema: view },
        404: failure('No such invoice, or no such company.', notFound, 'company_not_found'),
        409: failure(
          'The invoice is not open or uncollectible (a paid one is refunded instead).',
          'invoice_not_voidable',
        ),
        410: companyShredded,
        503: failure(
          'The invoice is void, but its audit event waits for the outbox sweep (no retry is needed).',
          'audit_unavailable',
        ),
      },
    });
  }
  operations.push(
    {
      method: 'get',
      route: `/v1/companies/:companyId/${path}/:invoiceId`,
      operationId: `get${operation}`,
      summary: `Read a ${name}`,
      tag: TAG,
      permission: READ,
      params,
      responses: {
        200: { description: `The ${name}.`, schema: view },
        404: notFoundHere,
      },
    },
    {
      method: 'get',
      route: `/v1/companies/:companyId/${path}/:invoiceId/pdf`,
      operationId: `download${operation}Pdf`,
      summary: `Download a ${name}'s PDF`,
      description:
        'At the PHI level the company (or office) chose. Its hash is checked against the one recorded when it was rendered (`x-content-sha256`), and the download is audited, with the `X-Access-Reason` sealed, before any byte is sent. A company may require that reason (10+ characters) for every download.',
      tag: TAG,
      permission: 'invoices:download',
      params,
      responses: {
        200: { description: 'The PDF.', contentType: 'application/pdf' },
        400: failure(
          'The company requires an `X-Access-Reason` header to download documents.',
          'access_reason_required',
        ),
        404: notFoundHere,
        409: failure('The document is being rendered; try again shortly.', 'document_not_ready'),
        410: failure(
          "The company's data was crypto-shredded; its documents cannot be read.",
          'company_shredded',
          'data_shredded',
        ),
        500: failure(
          'The stored document does not match the hash recorded when it was rendered; it was not sent (audited at high severity).',
          'document_integrity_failed',
        ),
      },
    },
  );
  return operations;
}

export const OPERATIONS: OperationSpec[] = [
  ...KINDS.flatMap(documentOperations),
  {
    method: 'put',
    route: '/v1/companies/:companyId/invoice-settings',
    operationId: 'putCompanyInvoiceSettings',
    summary: "Set the company's invoice settings",
    description:
      'Number prefix, PHI level, letterhead (and neutral letterhead), whether downloads need a stated reason, time zone. A field left out keeps its stored value; `null` clears it back to its default. Audited (`invoice_settings.updated`; letterheads by mark, never their text).',
    tag: TAG,
    permission: SETTINGS,
    params: settingsCompanyParams,
    body: withExamples(companyInvoiceSettingsSchema, ...REQUEST_EXAMPLES.putCompanyInvoiceSettings),
    responses: {
      200: {
        description: "The company's documents' settings now, defaults filled in.",
        schema: z.strictObject(effectiveSettings),
      },
      404: companyNotFound,
      410: companyShredded,
      503: auditPending,
    },
  },
  {
    method: 'put',
    route: '/v1/companies/:companyId/offices/:officeId/invoice-settings',
    operationId: 'putOfficeInvoiceSettings',
    summary: "Set an office's invoice settings overrides",
    description:
      "PHI level, letterhead and letterhead style of the office's documents. A field left out keeps its stored value; `null` removes the override (the company's applies). Audited (`invoice_settings.updated`).",
    tag: TAG,
    permission: SETTINGS,
    params: officeParams,
    body: withExamples(officeInvoiceSettingsSchema, ...REQUEST_EXAMPLES.putOfficeInvoiceSettings),
    responses: {
      200: {
        description: "The office's documents' settings now: the company's with the office's overrides.",
        schema: z.strictObject({ officeId: z.string(), ...effectiveSettings }),
      },
      404: companyNotFound,
      410: companyShredded,
      503: auditPending,
    },
  },
  {
    method: 'put',
    route: '/v1/companies/:companyId/payers/:customerRef',
    operationId: 'putPayerProfile',
    summary: "Set a payer's billing details",
    description:
      "Name, billing address and email, stored encrypted under the opaque payer reference and printed on documents at the `standard` PHI level only. Nothing else is accepted. Whoever may charge a payer may record where that payer's bills go. Audited (`payer.updated`: which fields, never their values).",
    tag: TAG,
    permission: 'payments:create',
    params: payerParams,
    body: withExamples(payerProfileSchema, ...REQUEST_EXAMPLES.putPayerProfile),
    responses: {
      200: {
        description: 'Stored: a new profile, or one replaced whole.',
        schema: z.strictObject({ customerRef: z.string(), updated: z.enum(['created', 'replaced']) }),
      },
      404: companyNotFound,
      410: failure("The company's data was crypto-shredded.", 'company_shredded', 'data_shredded'),
      503: auditPending,
    },
  },
];
