import { createHash } from 'node:crypto';

/**
 * The dashboard's own pages (sign in, sign out): server-rendered, no scripts, no external assets, one inline style
 * allowed by its hash. Nothing a caller sent is ever echoed: messages are chosen from the fixed list below.
 */
const STYLE = `body{font:15px/1.45 system-ui,sans-serif;background:#151a21;color:#e6e9ee;margin:0}
main{max-width:30rem;margin:12vh auto;padding:2rem;background:#1f2630;border-radius:8px}
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:1rem 0 .3rem}
input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;border-radius:4px;border:1px solid #4a5564;background:#0f1319;color:inherit}
button{margin-top:1rem;padding:.5rem 1.2rem;border:0;border-radius:4px;background:#3f7be0;color:#fff;font-size:1rem;cursor:pointer}
p.note{color:#9aa5b4;font-size:.9rem}a{color:inherit}p.message{padding:.6rem .8rem;border-radius:4px;background:#3a2b1a;color:#f3c98b}`;

const STYLE_HASH = createHash('sha256').update(STYLE).digest('base64');

/** For the pages below: nothing but this document's own style and forms posting back to us. */
export const PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${STYLE_HASH}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/**
 * For Bull Board's own UI (its scripts, styles and fonts are served from our origin): no third-party origin at all
 * (its stylesheet asks Google for fonts; that request is refused, so ops' browsers tell Google nothing). Inline styles
 * are allowed because the board sets them from its theme; scripts come only from our origin.
 */
export const BOARD_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'self'",
].join('; ');

export const MESSAGES = {
  signed_out: 'You are signed out.',
  session_ended: 'Your session ended (inactivity or its maximum length). Sign in again.',
  token_refused: 'That token was not accepted. Get a new one from your identity provider.',
  role_refused: 'This dashboard is for platform operators only (roles platform_ops or platform_admin).',
  request_refused: 'The request did not come from this page. Sign in again.',
  audit_unavailable: 'Sign-in cannot be recorded in the audit trail right now; try again shortly.',
} as const;
export type MessageCode = keyof typeof MESSAGES;

export function isMessageCode(value: unknown): value is MessageCode {
  return typeof value === 'string' && Object.hasOwn(MESSAGES, value);
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><meta name="referrer" content="same-origin"><title>${escapeHtml(title)}</title>
<style>${STYLE}</style></head>
<body><main>${body}</main></body></html>`;
}

export function signInPage(basePath: string, message?: MessageCode): string {
  return page(
    'Sign in: queue dashboard',
    `<h1>Queue dashboard</h1>
${message ? `<p class="message" role="status">${escapeHtml(MESSAGES[message])}</p>` : ''}
<form method="post" action="${escapeHtml(basePath)}/sign-in" autocomplete="off">
<label for="token">Access token from your identity provider</label>
<input id="token" name="token" type="password" required autofocus spellcheck="false">
<button type="submit">Sign in</button>
</form>
<p class="note">For platform operators (platform_ops: read only; platform_admin: retry, clean, promote). The token is
used once to start a session; the session ends after a period of inactivity. Every sign-in and action is audited.</p>`,
  );
}

export function signOutPage(basePath: string, csrf: string): string {
  return page(
    'Sign out: queue dashboard',
    `<h1>Sign out of the queue dashboard?</h1>
<form method="post" action="${escapeHtml(basePath)}/sign-out">
<input type="hidden" name="csrf" value="${escapeHtml(csrf)}">
<button type="submit">Sign out</button>
</form>
<p class="note"><a href="${escapeHtml(basePath)}">Back to the queues</a></p>`,
  );
}
