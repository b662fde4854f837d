import { connect } from 'node:net';

/** Where tests and benchmarks find Redis, the MongoDB-wire server and stripe-mock. */
export interface ServiceAddresses {
  redisUrl: string;
  mongodbUri: string;
  stripeApiBase: string;
}

function reachable(host: string, port: number, timeoutMs = 2_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function hostPort(url: string, defaultPort: number): { host: string; port: number } {
  // A mongodb:// or redis+cluster:// URL may list several hosts; the first one tells whether anything is there.
  const parsed = new URL(
    url.replace(/^(?:mongodb(?:\+srv)?|rediss?(?:\+cluster|\+sentinel)?):\/\/(?:[^@/]*@)?([^/,?]+).*$/, 'tcp://$1'),
  );
  return { host: parsed.hostname, port: Number(parsed.port || defaultPort) };
}

/** One line per service that does not answer ("Redis (REDIS_URL) at 127.0.0.1:6379 does not answer"). */
export async function unreachableServices(services: ServiceAddresses): Promise<string[]> {
  const checks: Array<[string, string, number]> = [
    ['Redis (REDIS_URL)', services.redisUrl, 6379],
    ['MongoDB-wire server (MONGODB_URI)', services.mongodbUri, 27017],
    ['stripe-mock (STRIPE_API_BASE)', services.stripeApiBase, 80],
  ];
  const missing: string[] = [];
  for (const [what, url, defaultPort] of checks) {
    const { host, port } = hostPort(url, defaultPort);
    if (!(await reachable(host, port))) missing.push(`${what} at ${host}:${port} does not answer`);
  }
  return missing;
}

/** The same URI pointing at another database; host list, credentials and options are kept. */
export function withDatabaseName(uri: string, dbName: string): string {
  const match = /^(mongodb(?:\+srv)?:\/\/[^/?]*)(?:\/[^?]*)?(\?.*)?$/.exec(uri);
  if (!match) throw new Error(`cannot parse MONGODB_URI ${uri}`);
  return `${match[1]}/${dbName}${match[2] ?? ''}`;
}
