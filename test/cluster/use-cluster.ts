/**
 * Every file of the `redis-cluster` project talks to the cluster: REDIS_URL is this file's own copy of the environment
 * (jest gives each test file one), so the same suites in the `services` project keep their single Redis.
 */
if (!process.env.REDIS_CLUSTER_URL)
  throw new Error('REDIS_CLUSTER_URL is not set: test/cluster/global-setup.ts did not run');
process.env.REDIS_URL = process.env.REDIS_CLUSTER_URL;
