import {
  PAYMENT_MODES,
  maskSecret,
  resolvePaymentConfig,
  type Compliance,
  type PaymentSettings,
} from '../../domain/payment-config';

const attested: Compliance = {
  status: 'exempt_1179',
  rationale: 'payment processing only',
  attestedBy: 'usr-admin',
  attestedAt: '2026-11-01T00:00:00Z',
};
const companySettings: PaymentSettings = {
  secretKey: 'sk_test_company',
  accountId: 'acct_company',
  statementDescriptor: 'LAKESIDE CLINIC',
  defaultCurrency: 'usd',
  compliance: attested,
};
const officeFull: PaymentSettings = {
  secretKey: 'sk_test_office',
  accountId: 'acct_office',
  webhookSigningSecrets: ['whsec_office'],
  statementDescriptor: 'LAKESIDE NORTH',
  compliance: { ...attested, attestedBy: 'usr-office-admin' },
};
const officePartial: PaymentSettings = { statementDescriptor: 'LAKESIDE NORTH' };

const company = (mode: (typeof PAYMENT_MODES)[number], settings = companySettings) => ({
  companyId: 'co_1',
  mode,
  settings,
});
const office = (settings: PaymentSettings) => ({ officeId: 'off_1', settings });

// Every mode × no office / office without values / office with some / office with all. Written out literally.
describe('resolvePaymentConfig', () => {
  it.each([
    [
      'company',
      'no office',
      undefined,
      { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' },
    ],
    [
      'company',
      'office without values',
      office({}),
      { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' },
    ],
    [
      'company',
      'office with some values',
      office(officePartial),
      { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' },
    ],
    [
      'company',
      'office with all values',
      office(officeFull),
      { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' },
    ],
    ['hybrid', 'no office', undefined, { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' }],
    [
      'hybrid',
      'office without values',
      office({}),
      { secretKey: 'company', statementDescriptor: 'company', compliance: 'company' },
    ],
    [
      'hybrid',
      'office with some values',
      office(officePartial),
      { secretKey: 'company', statementDescriptor: 'office', compliance: 'company' },
    ],
    [
      'hybrid',
      'office with all values',
      office(officeFull),
      { secretKey: 'office', statementDescriptor: 'office', compliance: 'office' },
    ],
    [
      'office',
      'office with all values',
      office(officeFull),
      { secretKey: 'office', statementDescriptor: 'office', compliance: 'office' },
    ],
  ] as const)('%s mode, %s → sources %j', (mode, _label, officeLevel, expected) => {
    const resolved = resolvePaymentConfig(company(mode), officeLevel);
    if (!resolved.ok) throw new Error(resolved.message);
    expect({
      secretKey: resolved.sources.secretKey,
      statementDescriptor: resolved.sources.statementDescriptor,
      compliance: resolved.sources.compliance,
    }).toEqual(expected);
    expect(resolved.settings.secretKey).toBe(expected.secretKey === 'office' ? 'sk_test_office' : 'sk_test_company');
  });

  it('office mode without an office fails, saying an office is needed', () => {
    expect(resolvePaymentConfig(company('office'))).toMatchObject({ ok: false, code: 'payment_config_missing' });
  });

  it.each([
    ['without values', office({})],
    ['with only a descriptor', office(officePartial)],
  ])('office mode, office %s: fails naming the office', (_label, officeLevel) => {
    const resolved = resolvePaymentConfig(company('office'), officeLevel);
    expect(resolved).toMatchObject({ ok: false, code: 'office_payment_config_missing', missing: ['secretKey'] });
    expect(!resolved.ok && resolved.message).toContain('off_1');
  });

  it("office mode never borrows the company's gateway account or attestation", () => {
    const resolved = resolvePaymentConfig(company('office'), office({ secretKey: 'sk_test_office' }));
    expect(resolved.ok && resolved.settings).toEqual({
      secretKey: 'sk_test_office',
      statementDescriptor: 'LAKESIDE CLINIC',
      defaultCurrency: 'usd',
    });
    expect(resolved.ok && resolved.sources).toEqual({
      secretKey: 'office',
      statementDescriptor: 'company',
      defaultCurrency: 'company',
    });
  });

  it('no company configuration, or no key at all, is payment_config_missing', () => {
    expect(resolvePaymentConfig(undefined)).toMatchObject({ ok: false, code: 'payment_config_missing' });
    expect(resolvePaymentConfig(company('company', { statementDescriptor: 'X CLINIC' }))).toMatchObject({
      ok: false,
      code: 'payment_config_missing',
    });
  });
});

describe('maskSecret', () => {
  it('shows the kind and the last four characters only', () => {
    expect(maskSecret('sk_test_51Habc1234567890XYZ4242')).toBe('sk_test_…4242');
    expect(maskSecret('sk_live_abcdefgh12345678')).toBe('sk_live_…5678');
    expect(maskSecret('whsec_abcdefghijklmnop')).toBe('whsec_…mnop');
    expect(maskSecret('acct_1ABCDEFGH')).toBe('acct_…EFGH');
    expect(maskSecret(undefined)).toBeUndefined();
  });
});

describe('hybrid mode does not lend the company’s gateway account to an office', () => {
  const officeAccount: PaymentSettings = {
    secretKey: 'sk_test_office',
    accountId: 'acct_office',
    webhookSigningSecrets: ['whsec_office'],
    compliance: { ...attested, attestedBy: 'usr-office-admin' },
  };

  it.each([
    ['only its own secret key', { secretKey: 'sk_test_office' }, ['accountId', 'webhookSigningSecrets', 'compliance']],
    [
      'its own key and account id, no signing secrets or attestation',
      { secretKey: 'sk_test_office', accountId: 'acct_office' },
      ['webhookSigningSecrets', 'compliance'],
    ],
    [
      'its own key, account id and signing secrets, no attestation',
      { secretKey: 'sk_test_office', accountId: 'acct_office', webhookSigningSecrets: ['whsec_office'] },
      ['compliance'],
    ],
  ] satisfies Array<[string, PaymentSettings, string[]]>)(
    'hybrid office with %s (data written before the check): refused at charge time',
    (_l, own, missing) => {
      const resolved = resolvePaymentConfig(
        company('hybrid'),
        office({ ...own, statementDescriptor: 'LAKESIDE NORTH' }),
      );
      expect(resolved).toMatchObject({ ok: false, code: 'office_account_incomplete', missing });
      expect(!resolved.ok && resolved.message).toContain('off_1');
    },
  );

  it('hybrid office with its whole own account: every account field is the office’s', () => {
    const resolved = resolvePaymentConfig(company('hybrid'), office(officeAccount));
    expect(resolved.ok && resolved.sources).toMatchObject({
      secretKey: 'office',
      accountId: 'office',
      webhookSigningSecrets: 'office',
      compliance: 'office',
      statementDescriptor: 'company',
    });
  });

  it('hybrid office without a key of its own uses the company’s whole account, never a stray office field', () => {
    const resolved = resolvePaymentConfig(
      company('hybrid'),
      office({ webhookSigningSecrets: ['whsec_office'], compliance: officeAccount.compliance }),
    );
    expect(resolved.ok && resolved.settings).toMatchObject({
      secretKey: 'sk_test_company',
      accountId: 'acct_company',
      compliance: attested,
    });
    expect(resolved.ok && resolved.settings.webhookSigningSecrets).toBeUndefined();
    expect(resolved.ok && resolved.sources).toMatchObject({ secretKey: 'company', compliance: 'company' });
  });
});
