import servicesGlobalTeardown from '../global-teardown';
import { stopLocalCluster } from './cluster-script';

export default async function clusterGlobalTeardown(): Promise<void> {
  const started = globalThis.__hipaaBillingCluster;
  globalThis.__hipaaBillingCluster = undefined;
  if (started) await stopLocalCluster(started);
  // Only when this project's setup started them (the `services` project did not run): else its own teardown does.
  if (globalThis.__hipaaBillingClusterOwnsServices) await servicesGlobalTeardown();
}
