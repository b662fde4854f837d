import {
  decideDisputeTransition,
  disputeOutcome,
  DISPUTE_EVENT_TYPES,
  DISPUTE_STATUSES,
  isDisputeClosed,
  type DisputeEventType,
  type DisputeStatus,
  type RecordedDispute,
} from '../../domain/dispute-transitions';

const OPENED = new Date('2026-11-01T10:00:00Z');
const SAME = 'dp_1SameDispute';

type Expected = 'apply' | 'same' | 'stale' | 'final';

// Rows: the status recorded for the same dispute. Columns: the status the event carries, in DISPUTE_STATUSES order.
// apply = it moves; same = already there; stale = it would move backwards; final = the dispute is already closed.
const TABLE: Record<DisputeStatus, Expected[]> = {
  //                      w_needs  w_review w_closed needs    review   won      lost
  warning_needs_response: ['same', 'apply', 'apply', 'apply', 'apply', 'apply', 'apply'],
  warning_under_review: /**/ ['stale', 'same', 'apply', 'apply', 'apply', 'apply', 'apply'],
  warning_closed: /*     */ ['final', 'final', 'same', 'final', 'final', 'final', 'final'],
  needs_response: /*     */ ['stale', 'stale', 'apply', 'same', 'apply', 'apply', 'apply'],
  under_review: /*       */ ['stale', 'stale', 'apply', 'stale', 'same', 'apply', 'apply'],
  won: /*                */ ['final', 'final', 'final', 'final', 'final', 'same', 'final'],
  lost: /*               */ ['final', 'final', 'final', 'final', 'final', 'final', 'same'],
};

const recordedAs = (status: DisputeStatus, id = SAME): RecordedDispute => ({
  stripeDisputeId: id,
  status,
  openedAt: OPENED,
});
const incoming = (status: DisputeStatus, id = SAME, created = OPENED) => ({ stripeDisputeId: id, status, created });
const closed = (status: DisputeStatus) => ['won', 'lost', 'warning_closed'].includes(status);

describe('dispute transitions on Stripe events', () => {
  it('treats won, lost and warning_closed as closed; a closed inquiry kept the money', () => {
    expect(DISPUTE_STATUSES.filter(isDisputeClosed)).toEqual(['warning_closed', 'won', 'lost']);
    expect(DISPUTE_STATUSES.map(disputeOutcome)).toEqual([
      undefined,
      undefined,
      'won',
      undefined,
      undefined,
      'won',
      'lost',
    ]);
  });

  for (const event of DISPUTE_EVENT_TYPES) {
    describe(event, () => {
      for (const to of DISPUTE_STATUSES) {
        const expectedFirst = event === 'charge.dispute.closed' && !closed(to) ? 'status_mismatch' : 'opens';
        it(`nothing recorded + ${to} → ${expectedFirst}`, () => {
          const decision = decideDisputeTransition(undefined, event, incoming(to));
          if (expectedFirst === 'status_mismatch') {
            expect(decision).toEqual({ apply: false, reason: 'status_mismatch' });
          } else {
            expect(decision).toEqual({ apply: true, from: null, to, opens: true, closes: closed(to) });
          }
        });
      }

      for (const [from, row] of Object.entries(TABLE) as Array<[DisputeStatus, Expected[]]>) {
        row.forEach((expected, column) => {
          const to = DISPUTE_STATUSES[column]!;
          const mismatch = event === 'charge.dispute.closed' && !closed(to);
          it(`${from} + ${to} → ${mismatch ? 'status_mismatch' : expected}`, () => {
            const decision = decideDisputeTransition(recordedAs(from), event, incoming(to));
            if (mismatch) {
              expect(decision).toEqual({ apply: false, reason: 'status_mismatch' });
            } else if (expected === 'apply') {
              expect(decision).toEqual({ apply: true, from, to, opens: false, closes: closed(to) });
            } else {
              const reason = {
                same: 'already_in_state',
                stale: 'stale_transition',
                final: 'dispute_already_closed',
              }[expected];
              expect(decision).toEqual({ apply: false, reason });
            }
          });
        });
      }
    });
  }

  describe('another dispute on the same payment', () => {
    const later = new Date(OPENED.getTime() + 60_000);
    const earlier = new Date(OPENED.getTime() - 60_000);
    const events: DisputeEventType[] = ['charge.dispute.created', 'charge.dispute.updated'];

    for (const from of DISPUTE_STATUSES) {
      for (const event of events) {
        if (closed(from)) {
          it(`replaces a closed (${from}) dispute with a newer one on ${event}`, () => {
            expect(
              decideDisputeTransition(recordedAs(from), event, incoming('needs_response', 'dp_2Newer', later)),
            ).toEqual({ apply: true, from: null, to: 'needs_response', opens: true, closes: false });
          });
          it(`ignores an older dispute after a closed (${from}) one on ${event}`, () => {
            for (const created of [earlier, OPENED]) {
              expect(
                decideDisputeTransition(recordedAs(from), event, incoming('needs_response', 'dp_0Older', created)),
              ).toEqual({ apply: false, reason: 'superseded_dispute' });
            }
          });
        } else {
          it(`ignores another dispute while ${from} is open on ${event}`, () => {
            expect(
              decideDisputeTransition(recordedAs(from), event, incoming('needs_response', 'dp_2Newer', later)),
            ).toEqual({ apply: false, reason: 'other_dispute_open' });
          });
        }
      }
    }

    it('lets a newer dispute arrive already closed (its created event lost or late)', () => {
      expect(
        decideDisputeTransition(recordedAs('won'), 'charge.dispute.closed', incoming('lost', 'dp_2', later)),
      ).toEqual({ apply: true, from: null, to: 'lost', opens: true, closes: true });
    });
  });

  it('ends closed with the right outcome whatever order created, updated and closed arrive in', () => {
    const steps: Array<[DisputeEventType, DisputeStatus]> = [
      ['charge.dispute.created', 'needs_response'],
      ['charge.dispute.updated', 'under_review'],
      ['charge.dispute.closed', 'lost'],
    ];
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    for (const order of orders) {
      let recorded: RecordedDispute | undefined;
      for (const index of order) {
        const [event, status] = steps[index]!;
        const decision = decideDisputeTransition(recorded, event, incoming(status));
        if (decision.apply) recorded = recordedAs(decision.to);
      }
      expect(recorded?.status).toBe('lost');
    }
  });
});
