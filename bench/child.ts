/**
 * Bench child processes and how the parent talks to them: the product's api and
 * workers, the baselines, and the load generator each run in a process of their
 * own (forked from dist/bench), so none of them shares an event loop or a CPU
 * budget with another or with the bench. The parent sends requests over IPC and
 * gets one answer per request.
 */
import { fork } from 'node:child_process';
import { join } from 'node:path';

interface Request {
  id: number;
  type: string;
  payload?: unknown;
}
type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };
type Ready = { type: 'ready'; value: unknown } | { type: 'failed'; error: string };

export interface Child<Info> {
  /** What the child said when it was ready (its URL, for a server). */
  info: Info;
  request<T>(type: string, payload?: unknown): Promise<T>;
  /** Asks the child to stop and waits for it to exit; kills it after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Forks `dist/bench/<script>.js`, waits for its `ready` message. stderr is
 * passed through (warnings of the system under test), stdout is dropped: it is
 * the bench's result channel.
 */
export async function startChild<Info>(
  script: string,
  options: { args?: string[]; env?: NodeJS.ProcessEnv; execArgv?: string[]; readyTimeoutMs?: number } = {},
): Promise<Child<Info>> {
  const child = fork(join(__dirname, `${script}.js`), options.args ?? [], {
    env: options.env ?? process.env,
    execArgv: options.execArgv ?? [],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextId = 1;
  let exited: string | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `${script} exited (${signal ?? code})`;
      for (const waiter of pending.values()) waiter.reject(new Error(exited));
      pending.clear();
      resolve();
    });
  });
  child.on('message', (message: Reply | Ready) => {
    if (!('id' in message)) return;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.ok) waiter?.resolve(message.value);
    else waiter?.reject(new Error(`${script}: ${message.error}`));
  });

  const info = await new Promise<Info>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`${script} not ready after ${options.readyTimeoutMs ?? 30_000} ms`));
    }, options.readyTimeoutMs ?? 30_000);
    const onReady = (message: Reply | Ready) => {
      if ('id' in message) return;
      clearTimeout(timer);
      child.off('message', onReady);
      if (message.type === 'ready') resolve(message.value as Info);
      else reject(new Error(`${script} failed to start: ${message.error}`));
    };
    child.on('message', onReady);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script} exited (${signal ?? code}) before it was ready`));
    });
  }).catch((error: unknown) => {
    child.kill('SIGKILL');
    throw error;
  });

  const request = <T>(type: string, payload?: unknown): Promise<T> => {
    if (exited) return Promise.reject(new Error(exited));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      child.send({ id, type, payload } satisfies Request);
    });
  };

  return {
    info,
    request,
    async stop(graceMs = 20_000) {
      if (exited) return;
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        await request('stop').catch(() => undefined);
        await exitedPromise;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Child side: answers the parent's requests with `handlers`; `stop` runs `onStop` and exits. */
export function serveParent(
  handlers: Record<string, (payload: unknown) => Promise<unknown> | unknown>,
  onStop: () => Promise<void>,
): void {
  const send = (message: Reply | Ready) => process.send?.(message);
  let stopping: Promise<void> | undefined;
  const stopOnce = () => (stopping ??= onStop());
  process.on('message', (message: Request) => {
    if (message.type === 'stop') {
      stopOnce().then(
        () => {
          send({ id: message.id, ok: true, value: null });
          process.disconnect?.();
          setTimeout(() => process.exit(0), 100).unref();
        },
        (error: unknown) => {
          send({ id: message.id, ok: false, error: String(error) });
          process.exit(1);
        },
      );
      return;
    }
    const handler = handlers[message.type];
    Promise.resolve()
      .then(() => {
        if (!handler) throw new Error(`no handler for ${message.type}`);
        return handler(message.payload);
      })
      .then(
        (value) => send({ id: message.id, ok: true, value: value ?? null }),
        (error: unknown) =>
          send({ id: message.id, ok: false, error: error instanceof Error ? error.message : String(error) }),
      );
  });
  // The bench went away: nothing will ever ask this process to stop.
  process.on('disconnect', () => void stopOnce().finally(() => process.exit(0)));
}

export function announceReady(value: unknown): void {
  process.send?.({ type: 'ready', value } satisfies Ready);
}

export function announceFailure(error: unknown): void {
  process.send?.({ type: 'failed', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
  setTimeout(() => process.exit(1), 100).unref();
}
