import type { Compliance, PaymentSettings } from '../../domain/payment-config';
import { attestationKept, officeAccountProblem } from '../../domain/payment-account';

const compliance: Compliance = {
  status: 'baa_signed',
  reference: 'BAA-1',
  signedOn: '2026-10-01',
  attestedBy: 'usr-admin',
  attestedAt: '2026-11-01T00:00:00Z',
};

describe('attestationKept: an attestation belongs to a gateway account', () => {
  const before: PaymentSettings = { secretKey: 'sk_test_old', accountId: 'acct_A', compliance };
  it.each([
    ['nothing about the account changes', { ...before, statementDescriptor: 'X CLINIC' }, true],
    ['a new key for the same account id', { ...before, secretKey: 'sk_test_new' }, true],
    ['a new key for another account id', { ...before, secretKey: 'sk_test_new', accountId: 'acct_B' }, false],
    ['a new key and the account id removed', { secretKey: 'sk_test_new', compliance }, false],
    ['the key removed, the account id kept', { accountId: 'acct_A', compliance }, true],
    ['the same key, another account id', { ...before, accountId: 'acct_B' }, false],
    ['the same key, the account id removed', { secretKey: 'sk_test_old', compliance }, true],
  ] as const)('%s → kept: %s', (_label, after, kept) => {
    expect(attestationKept(before, after)).toBe(kept);
  });

  it.each([
    ['a new key, no account id before or after', { secretKey: 'sk_test_new' }, false],
    ['a new key with an account id named only now', { secretKey: 'sk_test_new', accountId: 'acct_A' }, false],
    ['the same key with its account id named only now', { secretKey: 'sk_test_old', accountId: 'acct_A' }, true],
  ] as const)('account unknown before: %s → kept: %s', (_label, after, kept) => {
    expect(attestationKept({ secretKey: 'sk_test_old', compliance }, { ...after, compliance })).toBe(kept);
  });

  it('a first key where there was none: the attestation named no account, so it goes', () => {
    expect(attestationKept({ compliance }, { secretKey: 'sk_test_new', accountId: 'acct_A', compliance })).toBe(false);
  });
});

describe('officeAccountProblem: in hybrid mode an office account is all or nothing', () => {
  const whole: PaymentSettings = {
    secretKey: 'sk_test_office',
    accountId: 'acct_office',
    webhookSigningSecrets: ['whsec_office'],
    compliance,
  };
  it.each([
    ['no account field (the company’s account applies)', { statementDescriptor: 'NORTH CLINIC' }, []],
    ['the whole account', whole, []],
    ['only a secret key', { secretKey: 'sk_test_office' }, ['accountId', 'webhookSigningSecrets', 'compliance']],
    ['only signing secrets', { webhookSigningSecrets: ['whsec_office'] }, ['secretKey', 'accountId', 'compliance']],
    ['only an attestation', { compliance }, ['secretKey', 'accountId', 'webhookSigningSecrets']],
  ] satisfies Array<[string, PaymentSettings, string[]]>)('hybrid, %s → missing %j', (_label, settings, missing) => {
    expect(officeAccountProblem('hybrid', settings)?.missing ?? []).toEqual(missing);
  });

  it('office mode needs only the office’s own key to attest; company mode has no office account', () => {
    expect(officeAccountProblem('office', { secretKey: 'sk_test_office' })).toBeUndefined();
    expect(officeAccountProblem('office', { compliance })?.missing).toEqual(['secretKey']);
  });
});
