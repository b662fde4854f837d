/** A Stripe event id (`evt_…`): how the webhook inbox, its jobs and replays name an event. */
export const STRIPE_EVENT_ID = /^evt_[A-Za-z0-9]{1,100}$/;

/** A Stripe PaymentIntent id (`pi_…`), as events name the intent a charge, refund or dispute belongs to. */
export const PAYMENT_INTENT_ID = /^pi_[A-Za-z0-9]{1,255}$/;
