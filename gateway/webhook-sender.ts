import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { RequestFilteringHttpAgent, RequestFilteringHttpsAgent } from 'request-filtering-agent';

/** What one POST to a receiver gave: its status and the start of its answer, or why there was none. */
export interface SendResult {
  statusCode?: number;
  latencyMs: number;
  errorCode?: 'timeout' | 'address_refused' | 'connection_failed' | 'redirect_not_followed';
  responseExcerpt?: string;
}

export interface WebhookSenderOptions {
  timeoutMs: number;
  /** Outside production: loopback receivers (tests, the demo) are allowed. Private and metadata addresses never are. */
  allowLoopback: boolean;
  excerptBytes: number;
}

/**
 * POSTs webhook bodies. The address a host name resolves to is checked at connect time by request-filtering-agent
 * (private, loopback, link-local and metadata addresses refused), so DNS cannot point a saved URL inward later.
 * Redirects are not followed (node's request never does); a 3xx is a failed attempt.
 */
export class WebhookSender {
  private readonly httpAgent: RequestFilteringHttpAgent;
  private readonly httpsAgent: RequestFilteringHttpsAgent;

  constructor(private readonly options: WebhookSenderOptions) {
    const filter = {
      allowPrivateIPAddress: false,
      allowMetaIPAddress: false,
      allowIPAddressList: options.allowLoopback ? ['127.0.0.0/8', '::1'] : [],
      // A new connection per attempt: each is checked again at connect time (DNS may have changed).
      keepAlive: false,
    };
    this.httpAgent = new RequestFilteringHttpAgent(filter);
    this.httpsAgent = new RequestFilteringHttpsAgent(filter);
  }

  send(url: string, headers: Record<string, string>, body: string): Promise<SendResult> {
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    return new Promise<SendResult>((resolve) => {
      let settled = false;
      const finish = (result: Omit<SendResult, 'latencyMs'>) => {
        if (settled) return;
        settled = true;
        resolve({ ...result, latencyMs: latency() });
      };
      const request = (secure ? httpsRequest : httpRequest)(
        target,
        {
          method: 'POST',
          agent: secure ? this.httpsAgent : this.httpAgent,
          headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: this.options.timeoutMs,
        },
        (response) => {
          const chunks: Buffer[] = [];
          let kept = 0;
          response.on('data', (chunk: Buffer) => {
            if (kept < this.options.excerptBytes) {
              chunks.push(chunk);
              kept += chunk.length;
            }
          });
          const done = () => {
            const status = response.statusCode ?? 0;
            const excerpt = Buffer.concat(chunks).subarray(0, this.options.excerptBytes).toString('utf8');
            finish({
              statusCode: status,
              ...(status >= 300 && status < 400 ? { errorCode: 'redirect_not_followed' as const } : {}),
              ...(excerpt ? { responseExcerpt: excerpt } : {}),
            });
          };
          response.on('end', done);
          response.on('error', done);
        },
      );
      // The whole exchange, not only the idle socket, is bounded by the timeout.
      const deadline = setTimeout(() => {
        finish({ errorCode: 'timeout' });
        request.destroy();
      }, this.options.timeoutMs);
      request.on('timeout', () => {
        finish({ errorCode: 'timeout' });
        request.destroy();
      });
      request.on('error', (error: Error) => {
        finish({ errorCode: / is not allowed/.test(error.message) ? 'address_refused' : 'connection_failed' });
      });
      request.on('close', () => clearTimeout(deadline));
      request.end(body);
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}
