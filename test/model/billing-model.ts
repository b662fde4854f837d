import { DateTime } from 'luxon';

/**
 * An independent reference model of what one subscription owes, written from docs/billing-rules.md (and Stripe
 * Billing's documented semantics), not from application/ or domain/. Times are epoch milliseconds; the billing time
 * zone is UTC; plans bill monthly. It is deliberately small: a few dozen lines per rule.
 *
 * Where the rules do not say what happens (a declined final bill), the model marks itself `uncertain`
 * and from then on only the structural invariants are checked for that subscription, never its amounts or status.
 */

export const DAY = 24 * 60 * 60 * 1000;
/** Stripe's minimum charge amount for USD. */
export const MINIMUM_CHARGE = 50;

export type Card = 'visa' | 'soft' | 'hard' | 'auth';
export type ProrationMode = 'create_prorations' | 'none' | 'always_invoice';
export type Status = 'trialing' | 'active' | 'past_due' | 'paused' | 'unpaid' | 'canceled';
export interface Policy {
  retryDelaysDays: number[];
  finalState: 'unpaid' | 'canceled';
}

export interface Charge {
  /** What it paid for: `period <start ISO>`, `adjustment`, `final`. */
  label: string;
  amount: number;
  refunded: number;
  disputed: boolean;
}

interface OpenBill {
  start: number;
  amount: number;
  firstFailureAt: number;
  /** When its last attempt was declined. */
  lastFailureAt: number;
  /** The policy's retries run or passed over: the next one is looked for from this index. */
  retries: number;
  status: 'open' | 'uncollectible';
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * The k-th cycle boundary from an anchor: the anchor's month plus k, on `day` (clamped to the month's end), at the
 * anchor's time of day, in UTC.
 */
export function boundary(anchor: number, day: number, k: number): number {
  const base = DateTime.fromMillis(anchor, { zone: 'utc' });
  const month = base.startOf('month').plus({ months: k });
  return month
    .set({ day: Math.min(day, month.daysInMonth!) })
    .set({ hour: base.hour, minute: base.minute, second: base.second, millisecond: base.millisecond })
    .toMillis();
}

/** The first billing day (midnight UTC on `day`, clamped) strictly after `at`. */
export function firstBillingDay(at: number, day: number): number {
  const base = DateTime.fromMillis(at, { zone: 'utc' }).startOf('month');
  for (let k = 0; ; k += 1) {
    const month = base.plus({ months: k });
    const candidate = month.set({ day: Math.min(day, month.daysInMonth!) }).toMillis();
    if (candidate > at) return candidate;
  }
}

export const prorate = (amount: number, part: number, whole: number) => Math.round((amount * part) / whole);

export class SubscriptionModel {
  now: number;
  status: Status;
  amount: number;
  card: Card = 'visa';
  trialEnd?: number;
  /** The cycle: boundaries are `boundary(anchor, day, k)`; absent until the first period starts. */
  cycle?: { anchor: number; day: number };
  period?: { index: number; start: number; end: number; fullLength: number };
  pending = 0;
  cancelAtPeriodEnd = false;
  open?: OpenBill;
  waitingForCard = false;
  charges: Charge[] = [];
  /** Charge attempts the gateway declined (card networks count each against the merchant: no more may be made). */
  declines = 0;
  /**
   * Time no period may start in: [from, to) (to = Infinity while it lasts). A pause or an end at `t` blocks from
   * `t + 1`: the period that started at `t` was billed before it.
   */
  blocked: Array<[number, number]> = [];
  uncertain?: string;
  readonly log: string[] = [];
  private readonly billingDay?: number;

  constructor(
    readonly policy: Policy,
    input: { at: number; amount: number; trialDays?: number; billingDayOfMonth?: number },
  ) {
    this.now = input.at;
    this.amount = input.amount;
    this.billingDay = input.billingDayOfMonth;
    if (input.trialDays && input.trialDays > 0) {
      this.trialEnd = input.at + input.trialDays * DAY;
      this.status = 'trialing';
      this.blocked.push([input.at, this.trialEnd]);
    } else {
      this.status = 'active';
      this.startCycle(input.at, this.billingDay);
    }
  }

  /** Net money taken from the payer: succeeded charges minus refunds and lost disputes. */
  get netCharged(): number {
    return this.charges.reduce((sum, c) => sum + (c.disputed ? 0 : c.amount - c.refunded), 0);
  }

  /** Whether anything can still be billed on its own (a sweep or a clock has a reason to look at it). */
  get canBill(): boolean {
    return !['canceled', 'unpaid', 'paused'].includes(this.status) && !this.waitingForCard;
  }

  private note(text: string) {
    this.log.push(`${iso(this.now)} ${text}`);
  }

  private unsure(reason: string) {
    this.uncertain ??= reason;
  }

  /** A new cycle from `start`: a stub up to the billing day when there is one, billed at once. */
  private startCycle(start: number, day?: number) {
    if (day) {
      const first = firstBillingDay(start, day);
      this.cycle = { anchor: first, day };
      const fullLength = first - boundary(first, day, -1);
      this.period = { index: -1, start, end: first, fullLength };
      this.openPeriod(prorate(this.amount, first - start, fullLength));
    } else {
      this.cycle = { anchor: start, day: DateTime.fromMillis(start, { zone: 'utc' }).day };
      this.enterPeriod(0);
    }
  }

  private enterPeriod(index: number) {
    const { anchor, day } = this.cycle!;
    const start = boundary(anchor, day, index);
    const end = boundary(anchor, day, index + 1);
    this.period = { index, start, end, fullLength: end - start };
    this.openPeriod(this.amount);
  }

  /** Bills a period at its start: price plus the pending balance, under the minimum charge rule. */
  private openPeriod(price: number) {
    const bill = price + this.pending;
    this.note(`period ${iso(this.period!.start)} price ${price} pending ${this.pending} bill ${bill}`);
    if (bill < MINIMUM_CHARGE) {
      // Zero, a credit (carried on, never below zero) or below the gateway's minimum (carried onto the next bill).
      this.pending = bill;
      this.open = undefined;
      return;
    }
    this.pending = 0;
    this.open = {
      start: this.period!.start,
      amount: bill,
      firstFailureAt: this.now,
      lastFailureAt: this.now,
      retries: 0,
      status: 'open',
    };
    this.attempt(`period ${iso(this.period!.start)}`, true);
  }

  /** One charge attempt for the open bill with the current card. */
  private attempt(label: string, first: boolean, retry = false) {
    const open = this.open!;
    if (this.card === 'visa') {
      this.charges.push({ label, amount: open.amount, refunded: 0, disputed: false });
      this.note(`charged ${open.amount} (${label})`);
      const wasUnpaid = open.status === 'uncollectible';
      this.open = undefined;
      this.waitingForCard = false;
      if (this.status === 'past_due' || this.status === 'unpaid') this.status = 'active';
      if (wasUnpaid) {
        this.blocked = this.blocked.map(([from, to]) => [from, to === Infinity ? this.now : to]);
        // The owed period, if it has ended by now, is followed by a new cycle from now; otherwise it goes on.
        if (this.now >= this.period!.end) this.startCycle(this.now);
      }
      return;
    }
    this.note(`declined ${open.amount} (${this.card})`);
    this.declines += 1;
    if (first) open.firstFailureAt = this.now;
    open.lastFailureAt = this.now;
    if (retry) open.retries += 1;
    if (open.status === 'uncollectible') return;
    this.status = 'past_due';
    // Off-session, a card that needs authentication is declined `authentication_required` (Stripe): a hard decline.
    this.waitingForCard = this.card === 'hard' || this.card === 'auth';
    if (this.card === 'soft' && !this.nextRetry(open)) this.giveUp();
  }

  /**
   * The policy's next retry of an open bill: the first not yet run whose time is after its last decline. One already
   * due when an attempt was declined (a new card's, late in the window) is passed over, not made at once.
   */
  private nextRetry(open: OpenBill): { index: number; at: number } | undefined {
    const delays = this.policy.retryDelaysDays;
    for (let index = open.retries; index < delays.length; index += 1) {
      const at = open.firstFailureAt + delays[index]! * DAY;
      if (at > open.lastFailureAt) return { index, at };
    }
    return undefined;
  }

  private giveUp() {
    this.note(`gives up: ${this.policy.finalState}`);
    this.open!.status = 'uncollectible';
    this.waitingForCard = false;
    this.status = this.policy.finalState;
    if (this.status === 'unpaid') this.blocked.push([this.now + 1, Infinity]);
    else this.end();
  }

  private end() {
    this.status = 'canceled';
    this.blocked.push([this.now + 1, Infinity]);
    this.note('canceled');
    const settle = this.pending;
    this.pending = 0;
    if (settle > 0) {
      // Below the minimum there is no next bill to carry it onto: it is dropped (docs/billing-rules.md, "Cancel").
      if (settle < MINIMUM_CHARGE) this.note(`final bill ${settle} below the minimum: dropped`);
      else if (this.card !== 'visa') this.unsure('a final bill declined');
      else this.charges.push({ label: 'final', amount: settle, refunded: 0, disputed: false });
    } else if (settle < 0) {
      const last = [...this.charges].reverse().find((c) => c.label.startsWith('period') && !c.disputed);
      if (last) last.refunded += Math.min(-settle, last.amount - last.refunded);
    }
  }

  /** The next thing due, strictly after `now` or at it, up to `to`. */
  private nextEvent(to: number): { at: number; run: () => void } | undefined {
    const events: Array<{ at: number; run: () => void }> = [];
    if (this.status === 'canceled') return undefined;
    if (this.status === 'trialing' && this.trialEnd !== undefined) {
      events.push({
        at: this.trialEnd,
        run: () => {
          if (this.cancelAtPeriodEnd) return this.end();
          this.status = 'active';
          this.startCycle(this.trialEnd!, this.billingDay);
        },
      });
    }
    if (this.status === 'paused' && !this.period && this.cancelAtPeriodEnd && this.trialEnd !== undefined) {
      // Paused inside the trial: the trial is the period a cancel at period end waits for.
      events.push({ at: this.trialEnd, run: () => this.end() });
    }
    // A period whose bill is still in dunning does not end: its dunning runs on past its end, and the next period (or
    // the cancel at period end) comes when it is paid — at once then, if its boundary has passed — or never, if
    // dunning gives it up (docs/billing-rules.md, "Dunning").
    const inDunning = this.open?.status === 'open';
    if (this.period && !inDunning && (this.status === 'active' || this.status === 'paused')) {
      const paused = this.status === 'paused';
      if (!paused || this.cancelAtPeriodEnd) {
        events.push({
          at: this.period.end,
          run: () => {
            if (this.cancelAtPeriodEnd) return this.end();
            this.enterPeriod(this.period!.index + 1);
          },
        });
      }
    }
    const open = this.open;
    if (open && open.status === 'open' && this.status === 'past_due') {
      const delays = this.policy.retryDelaysDays;
      if (this.waitingForCard) {
        events.push({ at: open.firstFailureAt + Math.max(...delays) * DAY, run: () => this.giveUp() });
      } else {
        const next = this.nextRetry(open);
        if (next) {
          events.push({
            at: next.at,
            run: () => {
              open.retries = next.index;
              this.attempt(`period ${iso(open.start)}`, false, true);
            },
          });
        }
      }
    }
    const due = events.filter((e) => e.at <= to).sort((a, b) => a.at - b.at);
    return due[0];
  }

  advanceTo(to: number) {
    for (let guard = 0; guard < 1000; guard += 1) {
      const event = this.nextEvent(to);
      if (!event) break;
      this.now = Math.max(this.now, event.at);
      event.run();
    }
    this.now = to;
  }

  // ---- requests: each answers whether the api should accept it ----

  changePlan(amount: number, mode: ProrationMode): boolean {
    if (this.status === 'trialing') {
      this.amount = amount;
      return true;
    }
    if (this.status !== 'active' || !this.period) return false;
    const remaining = this.period.end - this.now;
    const net =
      mode === 'none'
        ? 0
        : prorate(amount, remaining, this.period.fullLength) - prorate(this.amount, remaining, this.period.fullLength);
    this.note(`plan ${this.amount} -> ${amount} (${mode}) net ${net}`);
    this.amount = amount;
    if (mode === 'always_invoice' && net >= MINIMUM_CHARGE && this.card === 'visa') {
      this.charges.push({ label: 'adjustment', amount: net, refunded: 0, disputed: false });
    } else {
      // Declined, it is carried onto the next bill.
      if (mode === 'always_invoice' && net >= MINIMUM_CHARGE) {
        this.note(`declined adjustment ${net} (${this.card})`);
        this.declines += 1;
      }
      this.pending += net;
    }
    return true;
  }

  pause(): boolean {
    if (this.status !== 'trialing' && this.status !== 'active') return false;
    this.status = 'paused';
    this.blocked.push([this.now + 1, Infinity]);
    return true;
  }

  resume(): boolean {
    if (this.status !== 'paused') return false;
    this.blocked = this.blocked.map(([from, to]) => [from, to === Infinity ? this.now : to]);
    if (this.trialEnd !== undefined && this.now < this.trialEnd) {
      this.status = 'trialing';
      this.period = undefined;
      return true;
    }
    this.status = 'active';
    // Resumed before the period paid before the pause has ended: that period goes on, and the next bill is at its end.
    if (this.period && this.now < this.period.end && !this.open) return true;
    this.startCycle(this.now);
    return true;
  }

  cancel(at: 'now' | 'period_end' | 'none'): boolean {
    if (this.status === 'canceled') return false;
    if (at === 'now') {
      this.end();
      return true;
    }
    this.cancelAtPeriodEnd = at === 'period_end';
    return true;
  }

  newCard(card: Card): boolean {
    if (this.status === 'canceled') return false;
    this.card = card;
    this.note(`new card ${card}`);
    if (this.open && (this.status === 'past_due' || this.status === 'unpaid')) {
      this.attempt(`period ${iso(this.open.start)}`, false);
      // Paid late, after its period's end: the next period (or the cancel at period end) is due now.
      this.advanceTo(this.now);
    }
    return true;
  }

  /** A partial or full refund of a refundable charge (index among them); the amount refunded, or 0. */
  refund(index: number, fraction: number): { charge: number; amount: number } | undefined {
    const refundable = this.charges.map((c, i) => ({ c, i })).filter(({ c }) => !c.disputed && c.amount > c.refunded);
    if (refundable.length === 0) return undefined;
    const { c, i } = refundable[index % refundable.length]!;
    const amount = Math.max(1, Math.floor((c.amount - c.refunded) * fraction));
    c.refunded += amount;
    return { charge: i, amount };
  }

  /** A dispute lost on a charge never refunded (index among them). */
  disputeLost(index: number): number | undefined {
    const candidates = this.charges.map((c, i) => ({ c, i })).filter(({ c }) => !c.disputed && c.refunded === 0);
    if (candidates.length === 0) return undefined;
    const { c, i } = candidates[index % candidates.length]!;
    c.disputed = true;
    return i;
  }
}
