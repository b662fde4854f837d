import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/** What the receiver did with one arrival. */
export type ReceiverAnswer = 'accepted' | 'duplicate' | 'error_500' | 'hung' | 'bad_signature';

export interface Arrival {
  webhookId: string;
  at: number;
  answer: ReceiverAnswer;
}

export interface ReceivedEvent {
  /** The verified payload of the first accepted arrival. */
  payload: unknown;
  /** 2xx answers given for this webhook-id (the first acceptance and every duplicate after it). */
  accepted: number;
  /** 500s and hangs given before it was accepted. */
  refused: number;
}

/** How a delivery is answered while the receiver misbehaves on purpose; never more than twice per event. */
const ERROR_SHARE = 0.12;
const HANG_SHARE = 0.05;
const MAX_MISBEHAVIOUR_PER_EVENT = 2;

/**
 * An integrator's webhook receiver, as docs/outgoing-webhooks.md tells one to write it: verifies the raw body with the
 * `standardwebhooks` library, deduplicates on `webhook-id` (a duplicate is answered 200 and not processed again).
 * It also misbehaves on purpose: some deliveries are answered 500, some are held unanswered past the sender's
 * timeout (then the connection is dropped: a hang never turns into a late 2xx the sender could not see).
 */
export class WebhookReceiver {
  readonly events = new Map<string, ReceivedEvent>();
  readonly arrivals: Arrival[] = [];
  private secret = '';
  private server!: Server;
  private readonly hanging = new Set<ServerResponse>();

  constructor(
    private readonly random: () => number,
    /** How long a hang lasts: past the system's WEBHOOK_TIMEOUT_MS. */
    private readonly hangMs: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks/billing`;
  }

  /** The endpoint's signing secret (`whsec_…`), shown once when the endpoint was registered. */
  useSecret(secret: string): void {
    this.secret = secret;
  }

  async start(): Promise<void> {
    this.server = createServer((request, response) => void this.handle(request, response));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    for (const response of this.hanging) response.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  count(answer: ReceiverAnswer): number {
    return this.arrivals.filter((a) => a.answer === answer).length;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const webhookId = String(request.headers['webhook-id'] ?? '');
    const note = (answer: ReceiverAnswer) => this.arrivals.push({ webhookId, at: Date.now(), answer });
    let payload: unknown;
    try {
      payload = new Webhook(this.secret).verify(body, request.headers as Record<string, string>);
    } catch {
      note('bad_signature');
      return void response.writeHead(400).end();
    }
    const seen = this.events.get(webhookId);
    if (seen && seen.accepted > 0) {
      seen.accepted += 1;
      note('duplicate');
      return void response.writeHead(200).end();
    }
    const event = seen ?? { payload: undefined, accepted: 0, refused: 0 };
    this.events.set(webhookId, event);
    if (event.refused < MAX_MISBEHAVIOUR_PER_EVENT) {
      const roll = this.random();
      if (roll < ERROR_SHARE) {
        event.refused += 1;
        note('error_500');
        return void response.writeHead(500).end('receiver failure (chaos)');
      }
      if (roll < ERROR_SHARE + HANG_SHARE) {
        event.refused += 1;
        note('hung');
        this.hanging.add(response);
        setTimeout(() => {
          this.hanging.delete(response);
          response.destroy();
        }, this.hangMs).unref();
        return;
      }
    }
    event.payload = payload;
    event.accepted = 1;
    note('accepted');
    response.writeHead(204).end();
  }
}
