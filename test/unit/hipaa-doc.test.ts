import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** docs/hipaa.md names the code that does each safeguard and the test that proves it: every one must exist. */
describe('docs/hipaa.md', () => {
  const root = join(__dirname, '../..');
  const doc = readFileSync(join(root, 'docs/hipaa.md'), 'utf8');

  it('names only files and folders that exist', () => {
    const paths = [...doc.matchAll(/`([a-z][\w.-]*\/[\w./*-]*)`/g)].map((m) => m[1]!);
    expect(paths.length).toBeGreaterThan(40);
    const missing = paths.filter((path) => {
      if (!path.includes('*')) return !existsSync(join(root, path));
      // `domain/*-transitions.ts`: at least one file matches.
      const [dir, pattern] = [path.slice(0, path.lastIndexOf('/')), path.slice(path.lastIndexOf('/') + 1)];
      const matcher = new RegExp(`^${pattern.replace(/[.]/g, '\\.').replace(/\*/g, '.*')}$`);
      return !readdirSync(join(root, dir)).some((file) => matcher.test(file));
    });
    expect(missing).toEqual([]);
  });

  it('quotes only test names that are in the test file it names', () => {
    const quoted = [...doc.matchAll(/`(test\/[\w/.-]+\.test\.ts)` \("([^"]+?)(?:…)?"\)/g)];
    expect(quoted.length).toBeGreaterThan(4);
    const absent = quoted.filter(([, file, name]) => !readFileSync(join(root, file!), 'utf8').includes(name!));
    expect(absent.map(([, file, name]) => `${file}: ${name}`)).toEqual([]);
  });
});
