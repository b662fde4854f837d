import { budgetSource } from '../../api/auth-failure-budget';

describe('the source a failed-authentication budget is kept for', () => {
  it.each([
    ['198.51.100.7', '198.51.100.7'],
    ['::ffff:198.51.100.7', '198.51.100.7'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:db8:1:2::/64'],
    ['2001:0db8:0001:0002:0000:0000:0000:0009', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('%s → %s', (ip, source) => {
    expect(budgetSource(ip)).toBe(source);
  });

  it('addresses of two /64s are two sources', () => {
    expect(budgetSource('2001:db8:1:2::1')).not.toBe(budgetSource('2001:db8:1:3::1'));
  });
});
