// Exit 0 when the server at the URL is the kind of service we expect (a port can be taken by anything):
//   node scripts/probe.cjs mongodb mongodb://127.0.0.1:27017
//   node scripts/probe.cjs stripe http://127.0.0.1:12111
// Plain JavaScript: it runs before the TypeScript is built.
const [kind, url] = process.argv.slice(2);

async function isMongoDb() {
  const { MongoClient } = require('mongodb');
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 2_000, directConnection: true });
  try {
    const reply = await client.db('admin').command({ ping: 1 });
    return reply.ok === 1;
  } finally {
    await client.close();
  }
}

async function isStripeApi() {
  // stripe-mock answers any valid request with a fixture; Stripe's error shape also proves it is a Stripe API.
  const response = await fetch(`${url}/v1/customers/cus_probe`, {
    headers: { authorization: 'Bearer sk_test_probe' },
    signal: AbortSignal.timeout(2_000),
  });
  const body = await response.json();
  return body.object === 'customer' || typeof body.error?.type === 'string';
}

const probes = { mongodb: isMongoDb, stripe: isStripeApi };
if (!probes[kind]) {
  console.error(`usage: node scripts/probe.cjs ${Object.keys(probes).join('|')} URL`);
  process.exit(2);
}
probes[kind]().then(
  (ok) => process.exit(ok ? 0 : 1),
  () => process.exit(1),
);
