import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const SCRIPT = join(__dirname, '..', '..', 'scripts', 'redis-cluster.sh');

export interface LocalCluster {
  /** redis+cluster://127.0.0.1:PORT,… (all six nodes as seeds). */
  url: string;
  ports: number[];
  dir: string;
}

/** Settings of scripts/redis-cluster.sh: first port, run directory and how soon a silent master is failed over. */
export interface ClusterSettings {
  port: number;
  dir: string;
  nodeTimeoutMs?: number;
}

function scriptEnv(settings: ClusterSettings): NodeJS.ProcessEnv {
  return {
    ...process.env,
    REDIS_CLUSTER_PORT: String(settings.port),
    REDIS_CLUSTER_DIR: settings.dir,
    ...(settings.nodeTimeoutMs ? { REDIS_CLUSTER_NODE_TIMEOUT: String(settings.nodeTimeoutMs) } : {}),
  };
}

/** Starts three masters and three replicas with the script CI and developers use, and says where they are. */
export async function startLocalCluster(settings: ClusterSettings): Promise<LocalCluster> {
  const { stdout } = await promisify(execFile)('bash', [SCRIPT, 'start'], {
    env: scriptEnv(settings),
    timeout: 120_000,
  });
  const url = /REDIS_CLUSTER_URL=(\S+)/.exec(stdout)?.[1];
  if (!url) throw new Error(`scripts/redis-cluster.sh start printed no REDIS_CLUSTER_URL:\n${stdout}`);
  return { url, ports: [0, 1, 2, 3, 4, 5].map((i) => settings.port + i), dir: settings.dir };
}

export async function stopLocalCluster(settings: ClusterSettings): Promise<void> {
  await promisify(execFile)('bash', [SCRIPT, 'stop'], { env: scriptEnv(settings), timeout: 60_000 });
}

/** Starts a killed node again: it rejoins from its nodes.conf as a replica, and this waits until it is in sync. */
export async function restartClusterNode(settings: ClusterSettings, port: number): Promise<void> {
  await promisify(execFile)('bash', [SCRIPT, 'start-node', String(port)], {
    env: scriptEnv(settings),
    timeout: 60_000,
  });
}
