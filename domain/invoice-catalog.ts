import type { BillingInterval } from './billing-period';
import type { PlanCategory } from './plan';
import { SERVICE_CATEGORIES } from './service-categories';

/**
 * The catalog every invoice and credit note line comes from: generic wording for a code, never free text (minimum
 * necessary). A one-off payment's line is its service category; a subscription period's is its plan's category and
 * interval ("Membership — monthly"), never the plan's own name.
 */
export type ServiceCategory = (typeof SERVICE_CATEGORIES)[number];

export const SERVICE_CATEGORY_WORDING: Readonly<Record<ServiceCategory, string>> = {
  office_visit: 'Office visit',
  telehealth_visit: 'Telehealth visit',
  copay: 'Copay',
  coinsurance: 'Coinsurance',
  deductible: 'Deductible',
  self_pay: 'Self-pay services',
  lab_services: 'Laboratory services',
  imaging_services: 'Imaging services',
  membership: 'Membership',
  payment_plan: 'Payment plan',
  products: 'Products',
  other_services: 'Other services',
};

/** Lines that are not a service category: a plan change's proration on a period's bill. */
export const ADJUSTMENT_WORDING = {
  proration: 'Plan change adjustment',
  /** Appended to a plan line whose period bill a plan change's credit lowered (no line is negative). */
  credited: 'less a plan change credit',
} as const;

const ONE: Readonly<Record<BillingInterval['unit'], string>> = {
  day: 'daily',
  week: 'weekly',
  month: 'monthly',
  year: 'yearly',
};

/** "monthly", "every 3 months". */
export function intervalWording(interval: BillingInterval): string {
  return interval.count === 1 ? ONE[interval.unit] : `every ${interval.count} ${interval.unit}s`;
}

export function isServiceCategory(code: string): code is ServiceCategory {
  return (SERVICE_CATEGORIES as readonly string[]).includes(code);
}

/** One catalog line: its code (what is stored and filtered on) and its wording (what is printed). */
export interface CatalogLine {
  code: string;
  description: string;
}

/** A one-off payment's line; a payment without a category is "Other services". */
export function serviceLine(category: string | undefined): CatalogLine {
  const code = category && isServiceCategory(category) ? category : 'other_services';
  return { code, description: SERVICE_CATEGORY_WORDING[code] };
}

/** A subscription period's line: "Membership — monthly", "Payment plan — every 3 months". */
export function planLine(category: PlanCategory, interval: BillingInterval): CatalogLine {
  return {
    code: `${category}_${interval.unit}_${interval.count}`,
    description: `${SERVICE_CATEGORY_WORDING[category]} — ${intervalWording(interval)}`,
  };
}
