import { randomUUID } from 'node:crypto';
import { containsCardNumber } from '../../domain/card-number';
import { SAVED_PAYMENT_METHOD_ID, savedPaymentMethodId } from '../../models/saved-payment-method.model';

describe('saved payment method ids', () => {
  it('never look like a card number, so a request naming one is never refused as carrying card data', () => {
    // Hex ids did, about 1 in 500: a run of 13+ digits that passes the Luhn check.
    for (let i = 0; i < 20_000; i += 1) {
      const id = savedPaymentMethodId('co_unit', `seti_${randomUUID()}`);
      expect(id).toMatch(SAVED_PAYMENT_METHOD_ID);
      expect(containsCardNumber(id)).toBe(false);
    }
  });

  it('are the same for the same company and SetupIntent, and differ otherwise', () => {
    expect(savedPaymentMethodId('co_a', 'seti_1')).toBe(savedPaymentMethodId('co_a', 'seti_1'));
    expect(savedPaymentMethodId('co_a', 'seti_1')).not.toBe(savedPaymentMethodId('co_b', 'seti_1'));
  });
});
