import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ChaosProcess } from './processes';
import { freePort } from '../devtools/ports';

const run = promisify(execFile);

/** The FerretDB binary `scripts/lib.sh` builds (as test/integration/audit-outage.test.ts finds it). */
export const FERRETDB_BIN =
  process.env.FERRETDB_BIN ??
  join(process.env.SERVICES_BIN_DIR || join(homedir(), '.cache', 'hipaa-billing', 'bin'), 'ferretdb');

/**
 * The PostgreSQL server FerretDB stores into, without a database: FERRETDB_POSTGRESQL_URL's server when set (as in
 * scripts/lib.sh), else the machine's on 127.0.0.1:5432.
 */
function postgresqlServer(): string {
  const configured = process.env.FERRETDB_POSTGRESQL_URL;
  if (configured) return configured.replace(/\/[^/?]*(\?.*)?$/, '');
  return `postgres://postgres@127.0.0.1:${process.env.POSTGRESQL_PORT ?? '5432'}`;
}

/**
 * A MongoDB-wire server of the run's own: FerretDB on PostgreSQL (a PostgreSQL database of its own, dropped at the
 * end), on a port of its own, so the suite can SIGKILL and restart it without touching the shared FerretDB that other
 * work uses. Restarted on the same port, state directory and data.
 */
export class ChaosDatabase {
  process!: ChaosProcess;
  port = 0;
  private pgDatabase = '';
  private readonly server = postgresqlServer();

  constructor(private readonly dir: string) {}

  /** The server's URI (no database name: the system adds its own). */
  get uri(): string {
    return `mongodb://127.0.0.1:${this.port}/`;
  }

  async start(suffix: string): Promise<void> {
    this.pgDatabase = `hbchaos_${suffix}`;
    await this.psql(`create database "${this.pgDatabase}"`);
    this.port = await freePort();
    const state = join(this.dir, 'ferretdb-state');
    mkdirSync(state, { recursive: true });
    this.process = new ChaosProcess(
      'ferretdb',
      FERRETDB_BIN,
      [
        '--handler=postgresql',
        // FerretDB 1.24 hung for good (every PostgreSQL connection idle, no command answered) after a restart with a
        // pool of 10 under the reconnecting system; 40 (its default is 50) leaves room on a shared PostgreSQL (100).
        `--postgresql-url=${this.server}/${this.pgDatabase}?pool_max_conns=40`,
        `--listen-addr=127.0.0.1:${this.port}`,
        '--debug-addr=-',
        `--state-dir=${state}`,
        '--telemetry=disable',
        '--log-level=info',
      ],
      {},
      /Listening on TCP/,
    );
    await this.process.start(30_000);
  }

  /** SIGKILL (a crashed or OOM-killed server), `downMs` down, then started again on its port and data. */
  async crashAndRestart(downMs: number): Promise<void> {
    await this.process.kill();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    await this.process.start(30_000);
  }

  /** Stops the server and drops its PostgreSQL database. */
  async stop(): Promise<void> {
    await this.process?.kill();
    if (this.pgDatabase) await this.psql(`drop database if exists "${this.pgDatabase}" with (force)`).catch(() => {});
  }

  private async psql(sql: string): Promise<void> {
    try {
      await run('psql', [`${this.server}/postgres`, '-qAtc', sql], { timeout: 30_000 });
    } catch (error) {
      const detail = (error as { stderr?: string }).stderr?.trim() || (error as Error).message;
      throw new Error(
        `the chaos suite runs a FerretDB of its own on PostgreSQL (${this.server}; FERRETDB_POSTGRESQL_URL sets ` +
          `another) and could not run \`${sql}\` there: ${detail}`,
      );
    }
  }
}
