import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openApiDocument } from './document';

/**
 * `npm run openapi` writes openapi.json, the committed contract, from the operations' schemas; `npm run openapi:check`
 * (CI) fails when the committed file is not what the code generates.
 */
const file = join(__dirname, '..', '..', '..', 'openapi.json');
const generated = `${JSON.stringify(openApiDocument(), null, 2)}\n`;
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(file, 'utf8');
  } catch {
    // missing: out of date
  }
  if (committed !== generated) {
    process.stderr.write('openapi.json is out of date with api/contracts: run `npm run openapi` and commit it\n');
    process.exit(1);
  }
  process.stdout.write('openapi.json is up to date\n');
} else {
  writeFileSync(file, generated);
  process.stdout.write(`wrote ${file}\n`);
}
