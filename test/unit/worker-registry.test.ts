import type { AppConfig } from '../../platform/config';
import { createLogger } from '../../platform/logger';
import { ALL_QUEUE_NAMES, QUEUE_NAMES } from '../../queues/names';
import { startWorkers } from '../../workers/main';
import {
  parseWorkerArgs,
  selectQueues,
  UnknownQueueError,
  WORKERS,
  type WorkerDefinition,
} from '../../workers/registry';

describe('the queue registry', () => {
  it('has one entry per queue name, under its own name, with a payload schema and a processor', () => {
    expect(Object.keys(WORKERS).sort()).toEqual([...ALL_QUEUE_NAMES].sort());
    for (const name of ALL_QUEUE_NAMES) {
      expect(WORKERS[name].queue).toBe(name);
      expect(typeof WORKERS[name].process).toBe('function');
    }
    // The schemas refuse what is not an id-only payload of their own queue.
    expect(
      WORKERS.charges.schema.safeParse({ paymentId: 'pay_01HZX3J6K8QW2M4N5P6R7S8T9V', requestId: 'r1' }).success,
    ).toBe(true);
    expect(WORKERS.charges.schema.safeParse({ refundId: 're_1', requestId: 'r1' }).success).toBe(false);
    expect(WORKERS.maintenance.schema.safeParse({}).success).toBe(true);
    expect(WORKERS.maintenance.schema.safeParse({ patientName: 'x' }).success).toBe(false);
  });

  it('does not compile an entry whose processor takes another queue’s payload', () => {
    // @ts-expect-error the refunds entry is not a charges entry (queue name and payload differ)
    const wrong: WorkerDefinition<'charges'> = WORKERS.refunds;
    expect(wrong.queue).toBe('refunds');
  });
});

describe('choosing the queues a worker process serves', () => {
  it('serves every queue by default', () => {
    expect(selectQueues()).toEqual([...ALL_QUEUE_NAMES]);
  });

  it('serves a subset, once each, in registry order', () => {
    expect(selectQueues(['audit', 'charges'])).toEqual(['charges', 'audit']);
    expect(selectQueues(['stripe-events', ' refunds', 'stripe-events'])).toEqual(['stripe-events', 'refunds']);
  });

  it('refuses an unknown queue name and says which names exist', () => {
    expect(() => selectQueues(['charges', 'charge'])).toThrow(UnknownQueueError);
    expect(() => selectQueues(['charges', 'charge'])).toThrow(
      'unknown queue "charge"; the queues are: charges, audit, maintenance, stripe-events, refunds',
    );
    expect(() => selectQueues(['charges', ''])).toThrow('unknown queue ""');
    expect(() => selectQueues([])).toThrow('no queue selected');
  });

  it('reads --queues from the command line and refuses anything else', () => {
    expect(parseWorkerArgs([])).toEqual({});
    expect(parseWorkerArgs(['--queues', 'charges,audit'])).toEqual({ queues: ['charges', 'audit'] });
    expect(parseWorkerArgs(['--queues=renewals'])).toEqual({ queues: ['renewals'] });
    expect(parseWorkerArgs(['--queues', 'charges', '--queues', 'audit'])).toEqual({ queues: ['charges', 'audit'] });
    expect(() => parseWorkerArgs(['--queues'])).toThrow('--queues needs a comma-separated list');
    expect(() => parseWorkerArgs(['--queues', '--verbose'])).toThrow('--queues needs a comma-separated list');
    expect(() => parseWorkerArgs(['--queue', 'charges'])).toThrow('unknown argument "--queue"');
  });

  it('refuses to start with an unknown queue name before connecting to anything', async () => {
    const logger = createLogger({ level: 'silent' });
    // A config with nothing in it: start-up must fail on the name, before it reads a single address.
    const nothing = {} as AppConfig;
    await expect(
      startWorkers(nothing, logger, undefined, { queues: [QUEUE_NAMES.charges, 'renewal'] }),
    ).rejects.toThrow(UnknownQueueError);
  });
});
