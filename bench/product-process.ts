/**
 * A bench child running the product as it runs in production: `startApi` or
 * `startWorkers` (argv[2]: "api" | "workers"; for workers, then `--queues a,b` as
 * `npm run start:workers` takes it) with the configuration from its environment,
 * and nothing else in the process. It counts its own MongoDB and
 * Redis commands and answers `reset` and `stats` over IPC; `stop` shuts it down
 * the way SIGTERM would.
 */
import { startApi } from '../api/main';
import { loadConfig } from '../platform/config';
import { createLogger } from '../platform/logger';
import { startWorkers } from '../workers/main';
import { parseWorkerArgs } from '../workers/registry';
import { announceFailure, announceReady, serveParent } from './child';
import { installCommandCounters } from './instrument';

export type ProductRole = 'api' | 'workers';
export interface ProductInfo {
  url?: string;
  pid: number;
}

async function main(role: string | undefined, args: string[]): Promise<void> {
  const counters = installCommandCounters();
  const config = loadConfig(process.env);
  // Warnings and errors of the system under test go to stderr, away from the results on stdout.
  const logger = createLogger({ level: config.logLevel, name: `bench-${role}` }, process.stderr);
  let stop: () => Promise<void>;
  let info: ProductInfo;
  if (role === 'api') {
    const api = await startApi(config, logger);
    stop = api.stop;
    info = { url: api.url, pid: process.pid };
  } else if (role === 'workers') {
    const workers = await startWorkers(config, logger, undefined, parseWorkerArgs(args));
    stop = workers.stop;
    info = { pid: process.pid };
  } else {
    throw new Error(`role must be "api" or "workers", got ${role}`);
  }
  serveParent({ reset: () => counters.reset(), stats: () => counters.stats() }, () => stop());
  announceReady(info);
}

if (require.main === module) main(process.argv[2], process.argv.slice(3)).catch(announceFailure);
