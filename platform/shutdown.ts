import type { Logger } from './logger';

/**
 * Runs `stop` once on SIGTERM/SIGINT, bounded by a deadline so a stuck
 * dependency cannot keep a terminating process alive forever.
 */
export function onShutdownSignal(logger: Logger, deadlineMs: number, stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error({ deadlineMs }, 'shutdown deadline passed; exiting');
      process.exit(1);
    }, deadlineMs);
    deadline.unref();
    stop().then(
      () => {
        logger.info('stopped cleanly');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'error while shutting down');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', handler);
  process.once('SIGINT', handler);
}

/** Exit with the message of a start-up failure (e.g. a ConfigError lists every bad variable). */
export function exitOnStartupFailure(logger: Pick<Logger, 'fatal'> | undefined, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  if (logger) logger.fatal({ err: error }, 'failed to start');
  else process.stderr.write(`${message}\n`);
  process.exit(1);
}
