import { z } from 'zod';
import { INTERVAL_UNITS } from './billing-period';
import { containsCardNumber } from './card-number';
import { isIsoCurrency } from './money';
import { OFFICE_ID } from './payment-request';

/** What a plan is, as coarse as a payment's service category: it is printed on invoices. */
export const PLAN_CATEGORIES = ['membership', 'payment_plan'] as const;
export type PlanCategory = (typeof PLAN_CATEGORIES)[number];

/** Our plan id: `plan_` and a ULID. */
export const PLAN_ID = /^plan_[0-9A-Z]{26}$/;

/**
 * A plan's name is a short generic label ("Gold membership", "12-month plan"): letters, digits, spaces, `.`, `-`,
 * at most 40 characters and 5 words, and never a card number. Anything longer is free text, where clinical detail
 * would go; the category says what kind of plan it is.
 */
const PLAN_NAME = /^[A-Za-z0-9][A-Za-z0-9 .-]{0,39}$/;

export function planRequestSchema(maxAmount: number) {
  return z
    .object({
      category: z.enum(PLAN_CATEGORIES),
      name: z
        .string()
        .regex(PLAN_NAME, 'must be a short generic label: letters, digits, spaces, "." and "-", at most 40 characters')
        .refine((name) => name.trim().split(/\s+/).length <= 5, 'must be at most 5 words (no free text)')
        .refine((name) => !containsCardNumber(name), 'must not contain a card number'),
      amount: z.number().int('must be an integer number of minor units (cents)').positive().max(maxAmount),
      currency: z
        .string()
        .refine((c) => /^[a-zA-Z]{3}$/.test(c) && isIsoCurrency(c), 'must be a three-letter ISO 4217 currency code')
        .transform((c) => c.toLowerCase()),
      interval: z.object({ unit: z.enum(INTERVAL_UNITS), count: z.number().int().min(1).max(365) }).strict(),
      trialDays: z.number().int().min(0).max(730).default(0),
      officeIds: z.array(z.string().regex(OFFICE_ID, 'must be an office id')).min(1).max(500).optional(),
    })
    .strict();
}
export type PlanRequest = z.infer<ReturnType<typeof planRequestSchema>>;
