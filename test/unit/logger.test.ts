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

describe('log redaction beyond plain objects', () => {
  const secrets = [
    '4242424242424242',
    'Margaret Holloway',
    '1957-03-14',
    'sk_live_nested',
    'margaret@example.org',
    'E11.9',
  ];
  const logged = () => {
    const logs = new CapturedLogs();
    return { logs, logger: createLogger({ level: 'info', name: 'redaction-test' }, logs) };
  };

  it('censors sensitive fields in arrays, errors, child bindings and what toJSON gives, at every level it reads', () => {
    const { logs, logger } = logged();
    class Patient {
      constructor(private readonly fullName: string) {}
      toJSON() {
        return { email: 'margaret@example.org', id: 'pat_01' };
      }
    }
    const failure = Object.assign(new TypeError('card declined'), {
      code: 'card_declined',
      details: { card: '4242424242424242' },
    });
    const child = logger.child({ patientName: 'Margaret Holloway', companyId: 'co_01' });
    child.child({ patient: { dob: '1957-03-14' } }).error(
      {
        attempts: [{ card: { number: '4242424242424242' } }, { ok: true }],
        config: Object.freeze({ secretKey: 'sk_live_nested', mode: 'test' }),
        owner: { patient: new Patient('Margaret Holloway') },
        visit: { codes: { diagnosis: 'E11.9' } },
        at: new Date('2026-12-07T00:00:00Z'),
        err: failure,
      },
      'charge failed',
    );
    for (const secret of secrets) expect(logs.text).not.toContain(secret);
    const line = JSON.parse(logs.text);
    expect(line).toMatchObject({
      patientName: '[REDACTED]',
      companyId: 'co_01',
      patient: { dob: '[REDACTED]' },
      attempts: [{ card: '[REDACTED]' }, { ok: true }],
      config: { secretKey: '[REDACTED]', mode: 'test' },
      owner: { patient: { email: '[REDACTED]', id: 'pat_01' } },
      visit: { codes: { diagnosis: '[REDACTED]' } },
      at: '2026-12-07T00:00:00.000Z',
      // The error is still written as one: its type, message, stack and code.
      err: { type: 'TypeError', message: 'card declined', code: 'card_declined', details: { card: '[REDACTED]' } },
      msg: 'charge failed',
    });
    expect(line.err.stack).toContain('TypeError: card declined');
  });

  it('leaves what the caller logged as it was', () => {
    const { logger } = logged();
    const payment = { card: { number: '4242424242424242' }, amount: 1200 };
    const failure = Object.assign(new Error('declined'), { card: '4242424242424242' });
    logger.info({ payment, err: failure, items: [{ email: 'margaret@example.org' }] });
    expect(payment.card.number).toBe('4242424242424242');
    expect(failure.card).toBe('4242424242424242');
    expect(failure).toBeInstanceOf(Error);
  });
});
