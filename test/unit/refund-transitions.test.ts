import { decideRefundTransition } from '../../domain/refund-transitions';
import { GATEWAY_REFUND_STATUSES, refundLedgerEffect, type RefundStatus } from '../../domain/refund-status';

// Rows: our refund's status. Columns: what Stripe reports, in GATEWAY_REFUND_STATUSES order.
// apply = the refund moves; same = already there; stale = it would move backwards (or out of a final status).
const TABLE: Record<RefundStatus, Array<'apply' | 'same' | 'stale'>> = {
  //                pending  requires_action succeeded failed   canceled
  queued: /*     */ ['apply', 'apply', 'apply', 'apply', 'apply'],
  processing: /* */ ['apply', 'apply', 'apply', 'apply', 'apply'],
  pending: /*    */ ['same', 'apply', 'apply', 'apply', 'apply'],
  requires_action: ['apply', 'same', 'apply', 'apply', 'apply'],
  needs_attention: ['apply', 'apply', 'apply', 'apply', 'apply'],
  succeeded: /*  */ ['stale', 'stale', 'same', 'apply', 'stale'],
  failed: /*     */ ['stale', 'stale', 'stale', 'same', 'stale'],
  canceled: /*   */ ['stale', 'stale', 'stale', 'stale', 'same'],
};

describe('refund transitions on what Stripe reports', () => {
  it('knows every status Stripe can report for a refund', () => {
    expect(GATEWAY_REFUND_STATUSES).toEqual(['pending', 'requires_action', 'succeeded', 'failed', 'canceled']);
  });

  for (const [from, row] of Object.entries(TABLE) as Array<[RefundStatus, Array<'apply' | 'same' | 'stale'>]>) {
    row.forEach((expected, column) => {
      const to = GATEWAY_REFUND_STATUSES[column]!;
      it(`${from} + ${to} → ${expected}`, () => {
        const decision = decideRefundTransition(from, to);
        if (expected === 'apply') expect(decision).toEqual({ apply: true, from, to });
        else
          expect(decision).toEqual({
            apply: false,
            reason: expected === 'same' ? 'already_in_state' : 'stale_transition',
          });
      });
    });
  }

  it('a late pending never undoes a success, but Stripe failing a refund after its success is applied', () => {
    expect(decideRefundTransition('succeeded', 'pending')).toMatchObject({ apply: false, reason: 'stale_transition' });
    expect(decideRefundTransition('succeeded', 'failed')).toMatchObject({ apply: true });
    expect(decideRefundTransition('failed', 'succeeded')).toMatchObject({ apply: false, reason: 'stale_transition' });
  });

  it('any order of the same reports ends in the same final status', () => {
    const reports = ['pending', 'requires_action', 'succeeded'] as const;
    const orders = [
      [0, 1, 2],
      [0, 2, 1],
      [1, 0, 2],
      [1, 2, 0],
      [2, 0, 1],
      [2, 1, 0],
    ];
    for (const order of orders) {
      let status: RefundStatus = 'processing';
      for (const index of order) {
        const decision = decideRefundTransition(status, reports[index]!);
        if (decision.apply) status = decision.to;
      }
      expect(status).toBe('succeeded');
    }
  });

  it('says what each status does to the payment: held while in flight, counted once succeeded, released when failed', () => {
    expect(
      ['queued', 'processing', 'pending', 'requires_action'].map((s) => refundLedgerEffect(s as RefundStatus)),
    ).toEqual(['held', 'held', 'held', 'held']);
    expect(refundLedgerEffect('succeeded')).toBe('refunded');
    expect(refundLedgerEffect('failed')).toBe('released');
    expect(refundLedgerEffect('canceled')).toBe('released');
  });
});
