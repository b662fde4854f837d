/**
 * Bench child processes and how the parent talks to them: the product's api and
 * workers, the baselines, and the load generator each run in a process of their
 * own (forked from dist/bench), so none of them shares an event loop or a CPU
 * budget with another or with the bench. The parent sends requests over IPC and
 * gets one answer per request.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';

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

const CHART_VALUES = join(__dirname, '..', '..', 'deploy', 'helm', 'hipaa-billing', 'values.yaml');

/** "512Mi", "1Gi" (the chart's limits) in MiB. */
function mebibytes(quantity: string): number {
  const match = /^(\d+)(Mi|Gi)$/.exec(quantity);
  if (!match) throw new Error(`cannot read the memory limit ${quantity} of ${CHART_VALUES}`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 : 1);
}

let heapArgv: string[] | undefined;

/**
 * The heap every child runs with: the one the chart's api pod gets with its default values. Node sizes the old
 * generation from the container's memory limit (half of it, at least 256 MB: 256 MB in the chart's 512 Mi), and the
 * chart's NODE_OPTIONS set the young generation. On the host's defaults (BENCH_HEAP=host) the old generation may reach
 * 4 GB on a 24 GB machine, and V8 lets it grow to about four times what is live before collecting it, which no pod
 * of ours does: the processes' RSS then measures the host, not the product (docs/performance.md, "The heap a pod
 * gets").
 */
function podHeapArgv(): string[] {
  if (heapArgv) return heapArgv;
  const heap = process.env.BENCH_HEAP ?? 'pod';
  if (heap === 'host') return (heapArgv = []);
  if (heap !== 'pod') throw new Error(`BENCH_HEAP must be pod or host, got ${heap}`);
  const values = load(readFileSync(CHART_VALUES, 'utf8')) as {
    env: { NODE_OPTIONS?: string };
    api: { resources: { limits: { memory: string } } };
  };
  const oldSpaceMb = Math.max(256, mebibytes(values.api.resources.limits.memory) / 2);
  heapArgv = [`--max-old-space-size=${oldSpaceMb}`, ...(values.env.NODE_OPTIONS ?? '').split(/\s+/).filter(Boolean)];
  process.stderr.write(`bench: every child's heap as in the chart's api pod: ${heapArgv.join(' ')}\n`);
  return heapArgv;
}

/**
 * Forks `dist/bench/<script>.js` with the pod's heap (`podHeapArgv`), waits for its `ready` message. stderr is
 * passed through (warnings of the system under test), stdout is dropped: it is the bench's result channel.
 */
export async function startChild<Info>(
  script: string,
  options: { args?: string[]; env?: NodeJS.ProcessEnv; execArgv?: string[]; readyTimeoutMs?: number } = {},
): Promise<Child<Info>> {
  const child = fork(join(__dirname, `${script}.js`), options.args ?? [], {
    env: options.env ?? process.env,
    execArgv: [...podHeapArgv(), ...(options.execArgv ?? [])],
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
