/**
 * A bench child that receives webhook deliveries: a plain Node HTTP server on 127.0.0.1 that reads each POST and
 * answers `200`, counting what it got (`count`, `reset` over IPC). It runs alone in its process, so the receiver's
 * CPU is neither the product's nor the baselines'. It does not verify signatures: the delivery tests do that with the
 * `standardwebhooks` package; here it would only add a receiver cost to every measurement alike.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { announceFailure, announceReady, serveParent } from './child';

export interface ReceiverInfo {
  url: string;
  pid: number;
}

async function main(): Promise<void> {
  let received = 0;
  let signed = 0;
  const server = createServer((request, response) => {
    request.on('data', () => undefined);
    request.on('end', () => {
      received += 1;
      if (typeof request.headers['webhook-signature'] === 'string') signed += 1;
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  serveParent(
    {
      count: () => ({ received, signed }),
      reset: () => {
        received = 0;
        signed = 0;
      },
    },
    () => new Promise<void>((resolve) => server.close(() => resolve())),
  );
  announceReady({ url: `http://127.0.0.1:${port}`, pid: process.pid } satisfies ReceiverInfo);
}

if (require.main === module) main().catch(announceFailure);
