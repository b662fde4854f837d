/** A cookie-keeping HTTP client for the queue dashboard, as a browser on the api's own origin would use it. */
export class DashboardClient {
  readonly cookies = new Map<string, string>();

  constructor(readonly baseUrl: string) {}

  get origin(): string {
    return new URL(this.baseUrl).origin;
  }

  async request(
    path: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.cookies.size > 0) {
      headers.cookie = [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
    }
    const method = init.method ?? 'GET';
    if (method !== 'GET' && headers.origin === undefined) headers.origin = this.origin;
    if (init.form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(`${this.baseUrl}${path}`, {
      method,
      headers,
      body: init.form ? new URLSearchParams(init.form).toString() : undefined,
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const at = pair.indexOf('=');
      const name = pair.slice(0, at).trim();
      const value = pair.slice(at + 1).trim();
      if (attributes.some((a) => /^\s*max-age=0$/i.test(a)) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }

  signIn(token: string): Promise<Response> {
    return this.request('/admin/queues/sign-in', { method: 'POST', form: { token } });
  }

  /** A state-changing board request as Bull Board's UI sends it: the CSRF cookie echoed in X-XSRF-TOKEN. */
  action(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const csrf = this.cookies.get('XSRF-TOKEN') ?? '';
    return this.request(`/admin/queues/api${path}`, { method: 'PUT', headers: { 'x-xsrf-token': csrf, ...headers } });
  }

  async json(path: string): Promise<{ status: number; body: any }> {
    const response = await this.request(`/admin/queues/api${path}`);
    return { status: response.status, body: await response.json() };
  }
}
