import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { waitFor } from './harness';

const REPO_ROOT = resolve(__dirname, '..', '..');
// The folders the api and worker processes are compiled from.
const RUNTIME_SOURCE_DIRS = [
  'api',
  'application',
  'gateway',
  'workers',
  'queues',
  'models',
  'domain',
  'platform',
  'server',
  'cli',
  'devtools',
];

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A compiled entry point running as its own process, with everything it printed kept for assertions. */
export interface NodeProcess {
  readonly name: string;
  readonly pid: number | undefined;
  /** Every complete line printed on stdout and stderr, in arrival order. */
  readonly lines: string[];
  /** Set once the process has exited and its output is closed. */
  readonly exitStatus: ExitStatus | undefined;
  /** Resolves when the process has exited and its stdout/stderr are fully read. */
  readonly exited: Promise<ExitStatus>;
  /** All output as one string (for "never appears in the logs" assertions). */
  text(): string;
  /** The output lines that are JSON objects (pino), parsed. */
  logRecords(): Array<Record<string, unknown>>;
  /** Polls the output for a log record; fails at once, with the output, if the process exits first. */
  waitForLog(
    matches: (record: Record<string, unknown>) => boolean,
    options?: { timeoutMs?: number; what?: string },
  ): Promise<Record<string, unknown>>;
  /** Sends `signal` and waits for the exit; rejects if the process is still running after `timeoutMs`. */
  stop(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitStatus>;
  /** SIGKILL if still running, then waits for the exit. For cleanup; never rejects. */
  kill(): Promise<void>;
}

/**
 * Fails when a runtime source file is newer than its compiled output (or the last build), so a test
 * never silently drives yesterday's build. `npm test` builds first.
 */
export function assertBuildIsCurrent(): void {
  // The build is incremental: a source whose output did not change is not rewritten, but the build info is.
  const buildInfo = join(REPO_ROOT, 'dist', '.tsbuildinfo');
  const builtAt = existsSync(buildInfo) ? statSync(buildInfo).mtimeMs : 0;
  const stale: string[] = [];
  const visit = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) visit(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const compiled = join(REPO_ROOT, 'dist', relative(REPO_ROOT, path)).replace(/\.ts$/, '.js');
        if (!existsSync(compiled) || Math.max(statSync(compiled).mtimeMs, builtAt) < statSync(path).mtimeMs) {
          stale.push(relative(REPO_ROOT, path));
        }
      }
    }
  };
  for (const dir of RUNTIME_SOURCE_DIRS) visit(join(REPO_ROOT, dir));
  if (stale.length > 0) {
    throw new Error(
      `dist/ is older than ${stale.slice(0, 5).join(', ')}${stale.length > 5 ? ` and ${stale.length - 5} more` : ''}; ` +
        'run `npm run build` first (npm test does)',
    );
  }
}

function parseJsonLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Starts `node dist/<entry>` with exactly `env` (plus PATH): nothing else of the
 * test runner's environment leaks into the child's configuration.
 */
export function startNodeProcess(name: string, entry: string, env: Record<string, string>): NodeProcess {
  const script = join(REPO_ROOT, 'dist', entry);
  if (!existsSync(script)) throw new Error(`${script} does not exist; run \`npm run build\` first`);
  const child: ChildProcess = spawn(process.execPath, [script], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let exitStatus: ExitStatus | undefined;

  const collect = (stream: NodeJS.ReadableStream | null): void => {
    let pending = '';
    stream?.setEncoding('utf8');
    stream?.on('data', (chunk: string) => {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop() ?? '';
      lines.push(...parts.filter((line) => line !== ''));
    });
    stream?.on('end', () => {
      if (pending !== '') lines.push(pending);
      pending = '';
    });
  };
  collect(child.stdout);
  collect(child.stderr);

  const exited = new Promise<ExitStatus>((resolveExit) => {
    // 'close', not 'exit': by then both output streams are read to the end.
    child.once('close', (code, signal) => {
      exitStatus = { code, signal };
      resolveExit(exitStatus);
    });
    child.once('error', () => {
      exitStatus = { code: null, signal: null };
      resolveExit(exitStatus);
    });
  });

  const tail = (): string => lines.slice(-40).join('\n');
  const logRecords = (): Array<Record<string, unknown>> =>
    lines.map(parseJsonLine).filter((record): record is Record<string, unknown> => record !== undefined);

  return {
    name,
    get pid() {
      return child.pid;
    },
    lines,
    get exitStatus() {
      return exitStatus;
    },
    exited,
    text: () => lines.join('\n'),
    logRecords,
    async waitForLog(matches, { timeoutMs = 20_000, what = 'a log line' } = {}) {
      const found = await waitFor(
        async () => {
          const record = logRecords().find(matches);
          if (!record && exitStatus) {
            throw new Error(`${name} exited (${JSON.stringify(exitStatus)}) before ${what}; its output:\n${tail()}`);
          }
          return record;
        },
        (record) => record !== undefined,
        { timeoutMs, what: `${name}: ${what}` },
      );
      return found as Record<string, unknown>;
    },
    async stop(signal, timeoutMs) {
      if (exitStatus) return exitStatus;
      child.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${name} still running ${timeoutMs} ms after ${signal}; its output:\n${tail()}`)),
          timeoutMs,
        );
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (!exitStatus && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
