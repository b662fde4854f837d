import { assertReachable, servicesFromEnvironment, startContainers, type StartedServices } from './support/services';

declare global {
  var __hipaaBillingContainers: StartedServices | undefined;
}

export default async function globalSetup(): Promise<void> {
  let addresses = servicesFromEnvironment();
  if (!addresses) {
    const started = await startContainers();
    globalThis.__hipaaBillingContainers = started;
    addresses = started.addresses;
  }
  await assertReachable(addresses);
  // Test files read these (jest runs them in this process or in workers that inherit the environment).
  process.env.REDIS_URL = addresses.redisUrl;
  process.env.MONGODB_URI = addresses.mongodbUri;
  process.env.STRIPE_API_BASE = addresses.stripeApiBase;
}
