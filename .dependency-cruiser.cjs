/**
 * The dependency rule (README, "Architecture"): imports only run downward.
 *   entry       server/ (api and workers in one process: `npm start`)
 *   transports  api/ workers/ cli/
 *   application application/
 *   storage     models/ queues/ gateway/ documents/
 *   domain      domain/
 *   platform    platform/ (below everything, importing none of it)
 * Workers never import each other; tests and benchmarks take development helpers from devtools/.
 * `npm run depcheck` checks it; CI runs it with zero exceptions.
 */
const TRANSPORTS = '^(api|workers|cli)/';
const APPLICATION = '^application/';
const STORAGE = '^(models|queues|gateway|documents)/';
const DOMAIN = '^domain/';
const PLATFORM = '^platform/';
const OURS =
  '^(server|api|workers|cli|application|models|queues|gateway|documents|domain|platform|devtools|bench|chaos|test|clients)/';

module.exports = {
  forbidden: [
    {
      name: 'platform-imports-nothing-of-ours',
      comment: 'platform (config, logging, redis, shutdown) sits below everything and imports none of it',
      severity: 'error',
      from: { path: PLATFORM },
      to: { path: OURS, pathNot: PLATFORM },
    },
    {
      name: 'domain-is-pure',
      comment: 'domain holds pure rules: it imports other domain modules and platform only',
      severity: 'error',
      from: { path: DOMAIN },
      to: { path: OURS, pathNot: `${DOMAIN}|${PLATFORM}` },
    },
    {
      name: 'storage-does-not-reach-up',
      comment:
        'models, queues, gateway and documents import domain and platform, not each other, use cases or transports',
      severity: 'error',
      from: { path: STORAGE },
      to: { path: OURS, pathNot: `${DOMAIN}|${PLATFORM}|^$1/` },
    },
    {
      name: 'application-does-not-reach-up',
      comment: 'use cases are entered by transports; they never import one',
      severity: 'error',
      from: { path: APPLICATION },
      to: { path: `^server/|${TRANSPORTS}|^(devtools|bench|chaos|test)/` },
    },
    {
      name: 'transports-do-not-import-each-other',
      comment: 'api, workers and cli share code through the application layer, never directly',
      severity: 'error',
      from: { path: '^(api|workers|cli)/' },
      to: { path: TRANSPORTS, pathNot: '^$1/' },
    },
    {
      name: 'workers-do-not-import-each-other',
      comment: 'one processor per queue; what two of them share is a use case',
      severity: 'error',
      from: { path: '^workers/([^/.]+)', pathNot: '^workers/(main|registry)[.]ts$' },
      to: { path: '^workers/', pathNot: '^workers/($1[./]|queue-worker[.]ts$)' },
    },
    {
      name: 'product-does-not-import-dev-tools',
      comment: 'devtools, bench, chaos and test serve development; nothing that ships imports them',
      severity: 'error',
      from: { path: `^server/|${TRANSPORTS}|${APPLICATION}|${STORAGE}|${DOMAIN}|${PLATFORM}`, pathNot: '^cli/' },
      to: { path: '^(devtools|bench|chaos|test)/' },
    },
    {
      name: 'dev-helpers-come-from-devtools',
      comment: 'tests, benchmarks and the chaos suite take development helpers from devtools/, never from cli or bench',
      severity: 'error',
      from: { path: '^(test|bench|chaos)/' },
      to: { path: '^(cli|bench)/', pathNot: '^bench/' },
    },
    {
      name: 'client-imports-nothing-of-ours',
      comment: 'clients/typescript is published on its own: it imports only itself and its npm dependencies',
      severity: 'error',
      from: { path: '^clients/typescript/' },
      to: { path: OURS, pathNot: '^clients/typescript/' },
    },
    {
      name: 'only-tests-cli-and-devtools-use-the-client',
      comment: 'our own code dogfoods the published client from tests, the cli and devtools; the product never does',
      severity: 'error',
      from: { path: OURS, pathNot: '^(clients|test|cli|devtools)/' },
      to: { path: '^clients/' },
    },
    {
      name: 'tests-do-not-import-bench',
      severity: 'error',
      from: { path: '^test/' },
      to: { path: '^bench/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.cjs', '.json'] },
  },
};
