import { unreachableServices, type ServiceAddresses } from '../../devtools/services';

/**
 * Where the tests find Redis, a MongoDB-wire server and stripe-mock:
 * 1. the environment (REDIS_URL, MONGODB_URI, STRIPE_API_BASE), when set;
 * 2. otherwise containers started with testcontainers, when a Docker engine exists;
 * 3. otherwise the run fails, saying what to start. Never a silent skip.
 */

const HOW_TO_START = [
  'Run the tests with `npm test`: with none of REDIS_URL, MONGODB_URI and STRIPE_API_BASE set it installs and starts',
  'Redis, FerretDB on PostgreSQL and stripe-mock itself (or testcontainers does, where a Docker engine runs).',
  'To start them yourself and keep them running: eval "$(npm run -s services:start)"',
].join('\n');

export async function assertReachable(services: ServiceAddresses): Promise<void> {
  const missing = await unreachableServices(services);
  if (missing.length > 0) throw new Error(`${missing.join('\n')}\n\n${HOW_TO_START}`);
}

export function servicesFromEnvironment(env: NodeJS.ProcessEnv = process.env): ServiceAddresses | undefined {
  const { REDIS_URL, MONGODB_URI, STRIPE_API_BASE } = env;
  if (!REDIS_URL && !MONGODB_URI && !STRIPE_API_BASE) return undefined;
  const unset = Object.entries({ REDIS_URL, MONGODB_URI, STRIPE_API_BASE })
    .filter(([, value]) => !value)
    .map(([name]) => name);
  if (unset.length > 0) throw new Error(`${unset.join(', ')} not set (set all three, or none)\n\n${HOW_TO_START}`);
  return { redisUrl: REDIS_URL!, mongodbUri: MONGODB_URI!, stripeApiBase: STRIPE_API_BASE! };
}

export interface StartedServices {
  addresses: ServiceAddresses;
  stop(): Promise<void>;
}

/** MongoDB 7 as a single-node replica set, Redis 7, stripe-mock — only where a Docker engine runs. */
export async function startContainers(): Promise<StartedServices> {
  const { GenericContainer, Wait, getContainerRuntimeClient } = await import('testcontainers');
  try {
    await getContainerRuntimeClient();
  } catch {
    throw new Error(
      `No service addresses in the environment and no Docker engine for testcontainers.\n\n${HOW_TO_START}`,
    );
  }
  const [mongo, redis, stripe] = await Promise.all([
    new GenericContainer('mongo:7')
      .withCommand(['--replSet', 'rs0', '--bind_ip_all'])
      .withExposedPorts(27017)
      .withWaitStrategy(Wait.forLogMessage(/Waiting for connections/))
      .start(),
    new GenericContainer('redis:7').withExposedPorts(6379).start(),
    new GenericContainer('stripe/stripe-mock:v0.203.0').withExposedPorts(12111).start(),
  ]);
  await mongo.exec([
    'mongosh',
    '--quiet',
    '--eval',
    "rs.initiate({_id:'rs0',members:[{_id:0,host:'localhost:27017'}]})",
  ]);
  return {
    addresses: {
      mongodbUri: `mongodb://${mongo.getHost()}:${mongo.getMappedPort(27017)}/hipaa_billing?directConnection=true`,
      redisUrl: `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`,
      stripeApiBase: `http://${stripe.getHost()}:${stripe.getMappedPort(12111)}`,
    },
    async stop() {
      await Promise.all([mongo.stop(), redis.stop(), stripe.stop()]);
    },
  };
}
