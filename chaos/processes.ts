import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

// chaos/ under ts-jest, dist/chaos/ when compiled.
const PARENT = resolve(__dirname, '..');
export const REPO_ROOT = basename(PARENT) === 'dist' ? resolve(PARENT, '..') : PARENT;

/** How many of a process's last output lines are kept (for a failure's report; a long run prints a lot). */
const KEPT_LINES = 300;
/** CHAOS_LOG_DIR: every line of every process also goes to `<dir>/<name>.log` (appended across restarts). */
const LOG_DIR = process.env.CHAOS_LOG_DIR;

/** A child process the suite may SIGKILL, SIGSTOP and start again. */
export class ChaosProcess {
  private child: ChildProcess | undefined;
  private exitedPromise: Promise<void> = Promise.resolve();
  readonly lines: string[] = [];
  /** Exits nobody asked for (a crash): the report names them. */
  unexpectedExits = 0;
  private expectingExit = false;

  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly args: string[],
    private readonly env: Record<string, string>,
    private readonly readyLine: RegExp,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Starts it and waits for its ready line. */
  async start(timeoutMs = 120_000): Promise<void> {
    this.expectingExit = false;
    const child = spawn(this.command, this.args, {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let ready = false;
    const collect = (stream: NodeJS.ReadableStream | null): void => {
      let pending = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (chunk: string) => {
        const parts = (pending + chunk).split('\n');
        pending = parts.pop() ?? '';
        for (const line of parts) {
          if (line === '') continue;
          if (!ready && this.readyLine.test(line)) ready = true;
          this.lines.push(line);
        }
        if (LOG_DIR)
          appendFileSync(join(LOG_DIR, `${this.name}.log`), parts.filter((line) => line !== '').join('\n') + '\n');
        if (this.lines.length > KEPT_LINES * 2) this.lines.splice(0, this.lines.length - KEPT_LINES);
      });
    };
    collect(child.stdout);
    collect(child.stderr);
    this.exitedPromise = new Promise((resolveExit) => {
      child.once('close', () => {
        if (!this.expectingExit) this.unexpectedExits += 1;
        resolveExit();
      });
      child.once('error', () => resolveExit());
    });
    const deadline = Date.now() + timeoutMs;
    while (!ready) {
      if (!this.running) throw new Error(`${this.name} exited before it was ready:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`${this.name} not ready after ${timeoutMs} ms:\n${this.tail()}`);
      await sleep(50);
    }
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child?.kill(signal);
  }

  /** SIGKILL, as a crash or an OOM kill does, and waits for the exit. */
  async kill(): Promise<void> {
    this.expectingExit = true;
    if (this.running) this.child?.kill('SIGCONT'); // a stopped process is killed all the same; let it go
    this.signal('SIGKILL');
    await this.exitedPromise;
  }

  tail(n = 40): string {
    return this.lines.slice(-n).join('\n');
  }
}

/** `node dist/<entry>` of this repository. */
export function nodeEntry(
  name: string,
  entry: string,
  env: Record<string, string>,
  readyLine: RegExp,
  args: string[] = [],
): ChaosProcess {
  const script = join(REPO_ROOT, 'dist', entry);
  if (!existsSync(script)) throw new Error(`${script} does not exist; run \`npm run build\` first`);
  return new ChaosProcess(name, process.execPath, [script, ...args], env, readyLine);
}
