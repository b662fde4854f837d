/**
 * Losing a race for a record (to another event, or between the refund worker and a webhook) means deciding again
 * on its new state, a few times.
 */
export const MAX_DECISIONS = 5;
