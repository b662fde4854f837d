/**
 * What a Stripe `charge.dispute.*` event means for the dispute recorded on our
 * payment, and whether it may change it. Pure: the stripe-events worker asks,
 * then applies the answer with a conditional single-document update.
 */
export const DISPUTE_STATUSES = [
  'warning_needs_response',
  'warning_under_review',
  'warning_closed',
  'needs_response',
  'under_review',
  'won',
  'lost',
] as const;
export type DisputeStatus = (typeof DISPUTE_STATUSES)[number];

export const DISPUTE_EVENT_TYPES = [
  'charge.dispute.created',
  'charge.dispute.updated',
  'charge.dispute.closed',
] as const;
export type DisputeEventType = (typeof DISPUTE_EVENT_TYPES)[number];

/** How a closed dispute ended for the money: an inquiry closed without a chargeback (`warning_closed`) kept it too. */
export type DisputeOutcome = 'won' | 'lost';

export function isDisputeStatus(status: unknown): status is DisputeStatus {
  return typeof status === 'string' && (DISPUTE_STATUSES as readonly string[]).includes(status);
}

export function isDisputeClosed(status: DisputeStatus): boolean {
  return status === 'won' || status === 'lost' || status === 'warning_closed';
}

export function disputeOutcome(status: DisputeStatus): DisputeOutcome | undefined {
  if (status === 'lost') return 'lost';
  if (status === 'won' || status === 'warning_closed') return 'won';
  return undefined;
}

/**
 * Stripe moves a dispute forward only: an inquiry (`warning_*`) may be
 * answered, reviewed and closed, or escalate to a chargeback (`needs_response`),
 * which is answered, reviewed and then won or lost. A status of lower rank than
 * the one we hold is a late delivery. Closed is final.
 */
const RANK: Readonly<Record<DisputeStatus, number>> = {
  warning_needs_response: 0,
  warning_under_review: 1,
  needs_response: 2,
  under_review: 3,
  warning_closed: 4,
  won: 4,
  lost: 4,
};

/** The dispute as recorded on the payment. */
export interface RecordedDispute {
  stripeDisputeId: string;
  status: DisputeStatus;
  /** When Stripe created the dispute. */
  openedAt: Date;
}

/** The dispute as the event describes it. */
export interface IncomingDispute {
  stripeDisputeId: string;
  status: DisputeStatus;
  created: Date;
}

export type DisputeIgnoreReason =
  | 'already_in_state'
  | 'stale_transition'
  | 'dispute_already_closed'
  | 'status_mismatch'
  | 'other_dispute_open'
  | 'superseded_dispute';

export type DisputeDecision =
  | {
      apply: true;
      from: DisputeStatus | null;
      to: DisputeStatus;
      /** The dispute is new on this payment (nothing recorded, or it replaces an older, closed one). */
      opens: boolean;
      closes: boolean;
    }
  | { apply: false; reason: DisputeIgnoreReason };

/**
 * May this event change the dispute recorded on the payment?
 *
 * One payment holds one dispute: in Stripe a charge has at most one dispute and
 * a PaymentIntent at most one successful charge, so at most one is open at a
 * time. Events for another dispute are ignored while ours is open; once ours is
 * closed, a newer dispute (created later) replaces it, and a late event of an
 * older one is ignored. The replaced dispute stays in the audit trail.
 *
 * `charge.dispute.closed` must carry a closed status. `created` and `updated`
 * are judged by the status they carry: Stripe's objects are snapshots, so an
 * `updated` that already says `won` closes the dispute, and the `closed`
 * event that follows finds it in that state.
 */
export function decideDisputeTransition(
  recorded: RecordedDispute | undefined,
  event: DisputeEventType,
  incoming: IncomingDispute,
): DisputeDecision {
  const to = incoming.status;
  const closes = isDisputeClosed(to);
  if (event === 'charge.dispute.closed' && !closes) return { apply: false, reason: 'status_mismatch' };
  if (!recorded) return { apply: true, from: null, to, opens: true, closes };

  if (recorded.stripeDisputeId !== incoming.stripeDisputeId) {
    if (!isDisputeClosed(recorded.status)) return { apply: false, reason: 'other_dispute_open' };
    if (incoming.created.getTime() <= recorded.openedAt.getTime()) {
      return { apply: false, reason: 'superseded_dispute' };
    }
    return { apply: true, from: null, to, opens: true, closes };
  }

  const from = recorded.status;
  if (from === to) return { apply: false, reason: 'already_in_state' };
  if (isDisputeClosed(from)) return { apply: false, reason: 'dispute_already_closed' };
  if (RANK[to] < RANK[from]) return { apply: false, reason: 'stale_transition' };
  return { apply: true, from, to, opens: false, closes };
}
