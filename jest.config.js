/** @type {import('jest').Config} */
const common = {
  testEnvironment: 'node',
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    // jose 6 ships ES modules only. Node 20 loads them with require(esm); Jest's own
    // module loader does not (before Node 24.9), so Jest compiles them to CommonJS.
    // request-filtering-agent 3 too (outgoing webhooks' connect-time address filter).
    '/node_modules/(jose|request-filtering-agent)/.+\\.js$': [
      'ts-jest',
      { tsconfig: { allowJs: true, module: 'commonjs', target: 'ES2022', isolatedModules: true } },
    ],
  },
  transformIgnorePatterns: ['/node_modules/(?!(jose|request-filtering-agent)/)'],
  modulePathIgnorePatterns: ['<rootDir>/dist/'],
};

/**
 * The suites run on a Redis Cluster as well as on one Redis (chosen for the queues they drive, within CI's budget of
 * about 3 minutes for the cluster pass; docs/testing.md has the measurements).
 */
const REDIS_CLUSTER_SUITES = [
  'test/cluster/charges-failover.test.ts', // charges while the master owning the queues' slot is killed
  'test/integration/charge-path.test.ts', // charges queue
  'test/integration/refunds.test.ts', // refunds queue
  'test/integration/stripe-event-binding.test.ts', // stripe-events queue (webhooks applied to payments and refunds)
  'test/integration/renewal-jobs.test.ts', // renewals queue and its job scheduler
  'test/integration/invoice-lifecycle.test.ts', // invoices queue
  'test/integration/dashboard.test.ts', // Bull Board, dashboard sessions, auth-failure budget
];

/** Unit tests need no services; integration and end-to-end tests get real ones from global setup. */
module.exports = {
  testTimeout: 60_000,
  projects: [
    {
      ...common,
      displayName: 'unit',
      // The billing reference model's own examples are pure: they run with the unit tests.
      testMatch: ['<rootDir>/test/unit/**/*.test.ts', '<rootDir>/test/model/billing-model.test.ts'],
    },
    {
      ...common,
      displayName: 'services',
      // With the billing property (issue 19): 100 random histories checked against the reference model
      // (`npm run test:model -- --runs N` runs more).
      testMatch: [
        '<rootDir>/test/integration/**/*.test.ts',
        '<rootDir>/test/e2e/**/*.test.ts',
        '<rootDir>/test/model/billing.property.test.ts',
      ],
      globalSetup: '<rootDir>/test/global-setup.ts',
      globalTeardown: '<rootDir>/test/global-teardown.ts',
    },
    {
      ...common,
      displayName: 'redis-cluster',
      // The queue-heavy suites once more, on a local Redis Cluster (3 masters, 3 replicas, scripts/redis-cluster.sh),
      // and a master failed over during charges: docs/testing.md. `--selectProjects unit services` leaves it out.
      testMatch: REDIS_CLUSTER_SUITES.map((file) => `<rootDir>/${file}`),
      setupFiles: ['<rootDir>/test/cluster/use-cluster.ts'],
      globalSetup: '<rootDir>/test/cluster/global-setup.ts',
      globalTeardown: '<rootDir>/test/cluster/global-teardown.ts',
    },
  ],
};
