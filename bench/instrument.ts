import { Redis } from 'ioredis';
import { MongoClient, type CommandStartedEvent } from 'mongodb';

/** What one process did since the last reset: database commands it sent, CPU it used, memory it holds. */
export interface ProcessStats {
  /** MongoDB commands by "command collection" (driver command monitoring), every client of the process. */
  mongo: Record<string, number>;
  /** Redis commands this process sent, by name (a Lua script is one EVALSHA), every ioredis client. */
  redis: Record<string, number>;
  /** User + system CPU of the whole process (all threads) since the reset. */
  cpuMs: number;
  rssMb: number;
  /** RSS when the counters were reset: what the measured operations added is the difference. */
  rssAtResetMb: number;
  heapUsedMb: number;
}

export function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

/**
 * Counts, from inside a bench child process, every MongoDB and Redis command it
 * sends. Counting at the client keeps the numbers ours on a Redis and a database
 * server that others use at the same time (INFO commandstats is server-wide).
 * Installed before anything connects: every MongoClient (mongoose's, the plain
 * one, the encryption key vault's) turns command monitoring on when it connects,
 * and every ioredis client (BullMQ's included: one ioredis in node_modules)
 * counts what it sends.
 */
export function installCommandCounters(): { reset(): void; stats(): ProcessStats } {
  let mongo: Record<string, number> = {};
  let redis: Record<string, number> = {};
  let cpuMark = process.cpuUsage();
  const mb = (bytes: number) => bytes / (1024 * 1024);
  let rssAtReset = mb(process.memoryUsage.rss());
  const countMongo = (event: CommandStartedEvent) => {
    const target = event.command[event.commandName];
    const key = typeof target === 'string' ? `${event.commandName} ${target}` : event.commandName;
    mongo[key] = (mongo[key] ?? 0) + 1;
  };

  const connect = MongoClient.prototype.connect;
  MongoClient.prototype.connect = function connectMonitored(this: MongoClient) {
    // The option is read when connections are made, so turning it on here still covers every command.
    const options = this as unknown as { monitorCommands: boolean };
    if (!options.monitorCommands) {
      options.monitorCommands = true;
      this.on('commandStarted', countMongo);
    }
    return connect.call(this);
  };
  const sendCommand = Redis.prototype.sendCommand;
  Redis.prototype.sendCommand = function sendCounted(this: Redis, ...args: Parameters<Redis['sendCommand']>) {
    const name = args[0].name.toLowerCase();
    redis[name] = (redis[name] ?? 0) + 1;
    return sendCommand.apply(this, args);
  };

  return {
    reset() {
      mongo = {};
      redis = {};
      cpuMark = process.cpuUsage();
      rssAtReset = mb(process.memoryUsage.rss());
    },
    stats() {
      const cpu = process.cpuUsage(cpuMark);
      const memory = process.memoryUsage();
      return {
        mongo: { ...mongo },
        redis: { ...redis },
        cpuMs: (cpu.user + cpu.system) / 1000,
        rssMb: mb(memory.rss),
        rssAtResetMb: rssAtReset,
        heapUsedMb: mb(memory.heapUsed),
      };
    },
  };
}
