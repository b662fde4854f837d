import { CapturedLogs } from '../support/harness';
import { createLogger } from '../../platform/logger';

describe('log redaction', () => {
  it('never writes authorization headers, secrets, card data or patient details', () => {
    const logs = new CapturedLogs();
    const logger = createLogger({ level: 'info', name: 'redaction-test' }, logs);
    logger.info(
      {
        req: { headers: { authorization: 'Bearer eyJhbGciOi.secret.token' } },
        company: { secretKey: 'sk_live_51Secret', stripeSecretKey: 'sk_test_Secret2' },
        payment: { clientSecret: 'pi_1_secret_abc', card: { number: '4242424242424242', cvc: '123' } },
        patient: { name: 'Margaret Holloway', dob: '1957-03-14', diagnosis: 'E11.9' },
        paymentId: 'pay_01ABC',
      },
      'something happened',
    );
    const line = logs.text;
    for (const leaked of [
      'eyJhbGciOi',
      'sk_live_51Secret',
      'sk_test_Secret2',
      'pi_1_secret_abc',
      '4242424242424242',
      'Margaret',
      '1957-03-14',
      'E11.9',
    ]) {
      expect(line).not.toContain(leaked);
    }
    // What is safe stays readable.
    expect(JSON.parse(line)).toMatchObject({
      paymentId: 'pay_01ABC',
      service: 'redaction-test',
      msg: 'something happened',
    });
  });
});
