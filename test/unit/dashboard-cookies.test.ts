import type { FastifyReply } from 'fastify';
import { sessionCookieName, setSessionCookies } from '../../api/dashboard/cookies';

/** The Set-Cookie lines a sign-in sends. */
function setCookies(secure: boolean): string[] {
  let lines: string[] = [];
  const reply = { header: (_name: string, value: string[]) => (lines = value) } as unknown as FastifyReply;
  setSessionCookies(
    reply,
    { token: 't'.repeat(43), csrf: 'c'.repeat(43), maxAgeSeconds: 60 },
    {
      path: '/admin/queues',
      secure,
    },
  );
  return lines;
}

describe('dashboard session cookie (issue 20)', () => {
  it('over TLS is named with the __Secure- prefix and marked Secure, so no plain-http page can plant one', () => {
    const [session] = setCookies(true);
    expect(sessionCookieName(true)).toBe('__Secure-hb_dashboard');
    expect(session).toMatch(/^__Secure-hb_dashboard=t{43}; /);
    expect(session).toMatch(/; Secure$/);
  });

  it('over plain-http development keeps the plain name (a browser would drop a __Secure- cookie there)', () => {
    const [session] = setCookies(false);
    expect(session).toMatch(/^hb_dashboard=/);
    expect(session).not.toMatch(/Secure/);
  });
});
