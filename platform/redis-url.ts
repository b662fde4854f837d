/**
 * `REDIS_URL`, read once: one Redis, a Redis Cluster (seed nodes) or a Redis behind Sentinel. Pure (no I/O, no
 * ioredis), so the configuration check and the connection factory (platform/redis.ts) read it the same way.
 *
 *   redis[s]://[user[:password]@]host[:port][/db]                   one Redis (ioredis reads it, as always)
 *   redis[s]+cluster://[user[:password]@]host[:port][,host[:port]…]  a Redis Cluster: any reachable seeds find the rest
 *   redis[s]+sentinel://[user[:password]@]host[:port][,…]/master[/db][?sentinelUsername=…&sentinelPassword=…]
 *
 * `rediss` means TLS to every node (and, for Sentinel, to the sentinels too). Credentials are percent-encoded as in
 * any URL. Error messages never repeat the URL: it may carry a password.
 */

export interface RedisHost {
  host: string;
  port: number;
}

interface Common {
  tls: boolean;
  username?: string;
  password?: string;
  /** Every host named: what the production TLS rule checks. */
  hosts: RedisHost[];
}

export type RedisTarget =
  | (Common & { mode: 'single'; url: string })
  | (Common & { mode: 'cluster' })
  | (Common & {
      mode: 'sentinel';
      /** The master's name, as the sentinels know it. */
      name: string;
      db?: number;
      sentinelUsername?: string;
      sentinelPassword?: string;
    });

export class RedisUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisUrlError';
  }
}

const SCHEMES = ['redis', 'rediss', 'redis+cluster', 'rediss+cluster', 'redis+sentinel', 'rediss+sentinel'];
const SENTINEL_OPTIONS = new Set(['sentinelUsername', 'sentinelPassword']);
const URL_SHAPE = /^([a-z+]+):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/i;

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RedisUrlError(`the ${what} is not valid percent-encoding`);
  }
}

/** `host`, `host:port`, `[v6]` or `[v6]:port`; the n-th of the list, for messages that name no secret. */
function parseHost(text: string, defaultPort: number, index: number, count: number): RedisHost {
  const which = count > 1 ? `host ${index + 1} of ${count}` : 'the host';
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::([^:]*))?$/.exec(text.trim());
  if (!match) throw new RedisUrlError(`${which} is missing or malformed (expected host:port)`);
  const host = match[1]!.replace(/^\[(.*)\]$/, '$1');
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) throw new RedisUrlError(`${which} is not a host name or address`);
  const port =
    match[2] === undefined || match[2] === '' ? defaultPort : /^\d+$/.test(match[2]) ? Number(match[2]) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RedisUrlError(`${which} has no valid port (1-65535)`);
  }
  return { host, port };
}

function parseDb(text: string): number {
  if (!/^\d{1,2}$/.test(text)) throw new RedisUrlError('the database number must be a small integer (0-15)');
  return Number(text);
}

/** Reads REDIS_URL, or throws a RedisUrlError saying what is wrong (without repeating the URL). */
export function parseRedisUrl(url: string): RedisTarget {
  const match = URL_SHAPE.exec(url.trim());
  const scheme = match?.[1]?.toLowerCase();
  if (!match || !scheme || !SCHEMES.includes(scheme)) {
    throw new RedisUrlError(`must start with ${SCHEMES.map((s) => `${s}://`).join(', ')}`);
  }
  const [, , userInfo, hostList = '', path = '', query] = match;
  const [base = '', mode = 'single'] = scheme.split('+') as [string, 'cluster' | 'sentinel' | undefined];
  const tls = base === 'rediss';
  const credentials: Pick<Common, 'username' | 'password'> = {};
  if (userInfo !== undefined && userInfo !== '') {
    const colon = userInfo.indexOf(':');
    const user = colon < 0 ? userInfo : userInfo.slice(0, colon);
    if (colon < 0) {
      // redis://password@host is how ioredis reads a lone credential; keep that meaning.
      credentials.password = decode(user, 'password');
    } else {
      if (user) credentials.username = decode(user, 'user name');
      credentials.password = decode(userInfo.slice(colon + 1), 'password');
    }
  }
  const parts = hostList.split(',');
  const defaultPort = mode === 'sentinel' ? 26379 : 6379;
  const hosts = parts.map((part, index) => parseHost(part, defaultPort, index, parts.length));

  if (mode === 'single') {
    if (hosts.length > 1) {
      throw new RedisUrlError(
        `names ${hosts.length} hosts: a Redis Cluster is ${base}+cluster://host:port,host:port, a Redis behind Sentinel ${base}+sentinel://host:26379,host:26379/master-name`,
      );
    }
    if (path.length > 1) parseDb(path.slice(1));
    return { mode, url, tls, hosts, ...credentials };
  }

  if (mode === 'cluster') {
    if (path.length > 1) throw new RedisUrlError('a Redis Cluster has only database 0: remove the path');
    if (query) throw new RedisUrlError('a Redis Cluster URL takes no ?options');
    return { mode, tls, hosts, ...credentials };
  }

  const [name = '', db, ...rest] = path.slice(1).split('/');
  if (!name || rest.length > 0) {
    throw new RedisUrlError(
      `Sentinel needs the master's name as its path: ${scheme}://host:26379,host:26379/master-name`,
    );
  }
  const target: RedisTarget = { mode, tls, hosts, name: decode(name, 'master name'), ...credentials };
  if (db !== undefined && db !== '') target.db = parseDb(db);
  for (const pair of query ? query.split('&') : []) {
    const [key = '', value = ''] = pair.split('=');
    if (!SENTINEL_OPTIONS.has(key)) {
      throw new RedisUrlError(
        `unknown Sentinel option "${decode(key, 'option')}" (known: ${[...SENTINEL_OPTIONS].join(', ')})`,
      );
    }
    target[key as 'sentinelUsername' | 'sentinelPassword'] = decode(value, key);
  }
  return target;
}

/** 127.0.0.0/8 by its numbers (a name that merely starts with `127.`, like 127.0.0.1.attacker.example, is not local). */
export function isLoopbackHost(host: string): boolean {
  return ['localhost', '::1'].includes(host) || /^127(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/.test(host);
}
