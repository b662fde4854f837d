import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PERMISSIONS, ROLE_PERMISSIONS } from '../../domain/access-policy';

/** docs/integrating.md shows the access policy to people; it must say what the code does. */
it('the documented policy table (docs/integrating.md) equals the policy in domain/access-policy.ts', () => {
  const doc = readFileSync(join(__dirname, '../../docs/integrating.md'), 'utf8');
  const lines = doc.split('\n').filter((line) => line.startsWith('| `') || line.startsWith('| permission'));
  const header = lines.find((line) => line.startsWith('| permission'));
  expect(header).toBeDefined();
  const roles = header!
    .split('|')
    .slice(2, -1)
    .map((cell) => cell.replace(/[`¹\s]/g, ''));
  expect([...roles].sort()).toEqual(Object.keys(ROLE_PERMISSIONS).sort());
  const shown: Record<string, string[]> = Object.fromEntries(roles.map((role) => [role, []]));
  for (const permission of PERMISSIONS) {
    const row = lines.find((line) => line.startsWith(`| \`${permission}\``));
    expect(row).toBeDefined();
    row!
      .split('|')
      .slice(2, -1)
      .forEach((cell, i) => {
        if (cell.includes('✓')) shown[roles[i]!]!.push(permission);
      });
  }
  for (const [role, permissions] of Object.entries(ROLE_PERMISSIONS)) {
    expect([...shown[role]!].sort()).toEqual([...permissions].sort());
  }
});
