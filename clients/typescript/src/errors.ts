/** One field's problem, on `400 invalid_request` and some `409`/`422` answers. */
export interface HipaaBillingErrorDetail {
  field: string;
  message: string;
}

/**
 * Every answer that is not 2xx is thrown as this: the HTTP `status`, our stable `code` to branch on (the error body's
 * `error.code`, e.g. `payment_not_found`, `idempotency_key_conflict`, `rate_limited`), the `requestId` to quote to
 * support (the body's on a 500, else the `x-request-id` header), and per-field `details`. A request that never got an
 * answer (network error after the retries) has `status` 0 and `code` `network_error`.
 */
export class HipaaBillingError extends Error {
  override readonly name = 'HipaaBillingError';

  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId: string | undefined,
    readonly details: HipaaBillingErrorDetail[] | undefined = undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Builds the error from an answer that is not 2xx (reads a copy of its body). */
  static async fromResponse(response: Response): Promise<HipaaBillingError> {
    const headerRequestId = response.headers.get('x-request-id') ?? undefined;
    let body: unknown;
    try {
      body = await response.clone().json();
    } catch {
      body = undefined;
    }
    const error = isErrorBody(body) ? body.error : undefined;
    return new HipaaBillingError(
      response.status,
      error?.code ?? `http_${response.status}`,
      error?.message ?? `the api answered ${response.status}`,
      error?.requestId ?? headerRequestId,
      error?.details,
    );
  }
}

interface ErrorBody {
  error: { code: string; message: string; details?: HipaaBillingErrorDetail[]; requestId?: string };
}

function isErrorBody(body: unknown): body is ErrorBody {
  if (typeof body !== 'object' || body === null || !('error' in body)) return false;
  const error: unknown = body.error;
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    typeof error.code === 'string' &&
    'message' in error &&
    typeof error.message === 'string'
  );
}
