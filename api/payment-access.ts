import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { PAYMENT_ID } from '../domain/payment-request';
import type { Models } from '../models';
import type { PaymentRecord } from '../models/payment.model';
import type { AccessGuard } from './access-guard';
import { ApiError } from './errors';
import { scopeIdSchema } from './validation';

/** The path of one payment (and of what hangs off it: its refunds). */
export const paymentParams = z.object({ companyId: scopeIdSchema, paymentId: z.string().regex(PAYMENT_ID) }).strict();

/** The payment, after the caller was authorized for its office; 404 for none of this company's. */
export async function authorizedPayment(
  deps: { models: Pick<Models, 'Payment'>; authorize: AccessGuard['authorize'] },
  request: FastifyRequest,
  params: { companyId: string; paymentId: string },
  permission: 'refunds:create' | 'payments:read',
): Promise<PaymentRecord> {
  const payment = await deps.models.Payment.findOne({ _id: params.paymentId, companyId: params.companyId }).lean();
  await deps.authorize(request, permission, {
    companyId: params.companyId,
    officeId: payment?.officeId,
    resource: { type: 'payment', id: params.paymentId },
  });
  if (!payment) throw new ApiError(404, 'payment_not_found', 'no such payment');
  return payment;
}

export const companyShredded = () => new ApiError(410, 'company_shredded', "the company's data was crypto-shredded");

/** 410 for a crypto-shredded company; otherwise whether the company exists. */
export async function rejectIfShredded(models: Pick<Models, 'Company'>, companyId: string): Promise<boolean> {
  const company = await models.Company.findById(companyId, { shreddedAt: 1 }).lean();
  if (company?.shreddedAt) throw companyShredded();
  return Boolean(company);
}
