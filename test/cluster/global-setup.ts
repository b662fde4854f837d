import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import servicesGlobalSetup from '../global-setup';
import { startLocalCluster, type ClusterSettings } from './cluster-script';

declare global {
  var __hipaaBillingCluster: ClusterSettings | undefined;
  var __hipaaBillingClusterOwnsServices: boolean | undefined;
}

/**
 * The `redis-cluster` jest project (docs/testing.md): the queue-heavy suites again, on a Redis Cluster of three masters
 * and three replicas started here (scripts/redis-cluster.sh) and stopped in global-teardown.ts. Jest runs this only
 * when a test of the project is selected. REDIS_CLUSTER_URL set beforehand means a cluster of your own: it is used and
 * left alone. The other services come from the `services` project's setup (run here too when that project is not).
 */
export default async function clusterGlobalSetup(): Promise<void> {
  if (!process.env.MONGODB_URI || !process.env.STRIPE_API_BASE) {
    await servicesGlobalSetup();
    globalThis.__hipaaBillingClusterOwnsServices = true;
  }
  if (process.env.REDIS_CLUSTER_URL) return;
  const settings: ClusterSettings = {
    port: Number(process.env.REDIS_CLUSTER_PORT || 7100),
    dir: mkdtempSync(join(tmpdir(), 'hb-redis-cluster-')),
  };
  const cluster = await startLocalCluster(settings);
  globalThis.__hipaaBillingCluster = settings;
  process.env.REDIS_CLUSTER_URL = cluster.url;
}
