import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CLI = join(__dirname, '../../dist/cli/main.js');

/**
 * Runs the built CLI (`npm run build` first) as an operator would, with `env` (and PATH) as its whole environment:
 * its exit code, and what it printed (stdout, then stderr). With `timeoutMs`, a run that hangs is killed and fails the
 * test instead of stalling it.
 */
export async function cli(
  args: string[],
  env: Record<string, string>,
  timeoutMs?: number,
): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      ...(timeoutMs ? { timeout: timeoutMs, killSignal: 'SIGKILL' as const } : {}),
    });
    return { code: 0, out: `${stdout}${stderr}` };
  } catch (error) {
    const failed = error as { code: number | null; killed?: boolean; stdout: string; stderr: string };
    if (failed.killed) throw new Error(`the CLI did not finish within ${timeoutMs} ms: ${args.join(' ')}`);
    return { code: failed.code ?? -1, out: `${failed.stdout}${failed.stderr}` };
  }
}
