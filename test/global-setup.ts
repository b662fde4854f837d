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
  // Every response any api under test sends is checked against the OpenAPI document (api/openapi/contract-check.ts):
  // one that does not match answers 500 contract_violation, which fails the test that received it.
  process.env.API_CONTRACT_CHECK ??= 'true';
}
