/**
 * Generic service categories: the most a payment or invoice says about what was
 * paid for. Deliberately coarse (minimum necessary): no procedure codes, no
 * diagnoses, no free text.
 */
export const SERVICE_CATEGORIES = [
  'office_visit',
  'telehealth_visit',
  'copay',
  'coinsurance',
  'deductible',
  'self_pay',
  'lab_services',
  'imaging_services',
  'membership',
  'payment_plan',
  'products',
  'other_services',
] as const;
