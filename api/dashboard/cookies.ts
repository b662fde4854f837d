import type { FastifyReply, FastifyRequest } from 'fastify';

export const SESSION_COOKIE = 'hb_dashboard';
/** Read by Bull Board's UI (axios) and sent back as the X-XSRF-TOKEN header on every request it makes. */
export const CSRF_COOKIE = 'XSRF-TOKEN';
export const CSRF_HEADER = 'x-xsrf-token';

/**
 * The session cookie's name: over TLS with the `__Secure-` prefix, which browsers accept only when set with `Secure`
 * from a secure origin, so a plain-http page or a sibling host cannot plant one. (`__Host-` would need `Path=/`; the
 * dashboard keeps its cookies to its own path.)
 */
export function sessionCookieName(secure: boolean): string {
  return secure ? `__Secure-${SESSION_COOKIE}` : SESSION_COOKIE;
}

/** Every value the request's Cookie header gives `name`, in order. */
export function cookieValues(request: FastifyRequest, name: string): string[] {
  const header = request.headers.cookie;
  if (!header) return [];
  const values: string[] = [];
  for (const part of header.split(';')) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) values.push(part.slice(at + 1).trim());
  }
  return values;
}

/** The cookie's value when the request sends it once; none when it sends it twice (which one would be ambiguous). */
export function cookieValue(request: FastifyRequest, name: string): string | undefined {
  const values = cookieValues(request, name);
  return values.length === 1 ? values[0] : undefined;
}

/**
 * `Secure` always in production (which runs behind TLS or refuses to start), and elsewhere whenever the request came
 * over TLS (directly or, with TRUST_PROXY, through the proxy); only plain-http development goes without, since a
 * browser would drop a Secure cookie there and nobody could sign in.
 */
export function cookiesAreSecure(request: FastifyRequest, production: boolean): boolean {
  return production || request.protocol === 'https';
}

export interface SessionCookies {
  path: string;
  secure: boolean;
}

function cookie(name: string, value: string, maxAgeSeconds: number, options: SessionCookies, httpOnly: boolean) {
  return [
    `${name}=${value}`,
    `Path=${options.path}`,
    `Max-Age=${maxAgeSeconds}`,
    'SameSite=Strict',
    ...(httpOnly ? ['HttpOnly'] : []),
    ...(options.secure ? ['Secure'] : []),
  ].join('; ');
}

export function setSessionCookies(
  reply: FastifyReply,
  session: { token: string; csrf: string; maxAgeSeconds: number },
  options: SessionCookies,
): void {
  void reply.header('set-cookie', [
    cookie(sessionCookieName(options.secure), session.token, session.maxAgeSeconds, options, true),
    // Not HttpOnly: the board's own script must read it to echo it. It is worth nothing without the session cookie.
    cookie(CSRF_COOKIE, session.csrf, session.maxAgeSeconds, options, false),
  ]);
}

export function clearSessionCookies(reply: FastifyReply, options: SessionCookies): void {
  void reply.header('set-cookie', [
    cookie(sessionCookieName(options.secure), '', 0, options, true),
    cookie(CSRF_COOKIE, '', 0, options, false),
  ]);
}

/**
 * Whether a state-changing request came from one of our own pages: its Origin (or, failing that, its Referer) is
 * this server's origin. Browsers send Origin on every POST/PUT/PATCH; the pages set `Referrer-Policy: same-origin`
 * so that it is the real origin and not `null`.
 */
export function isSameOrigin(request: FastifyRequest): boolean {
  const expected = `${request.protocol}://${request.host}`;
  const origin = request.headers.origin;
  if (typeof origin === 'string') return origin === expected;
  const referer = request.headers.referer;
  if (typeof referer !== 'string') return false;
  try {
    return new URL(referer).origin === expected;
  } catch {
    return false;
  }
}
