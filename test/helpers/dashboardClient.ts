/**
 * A tiny HTTP client for the dashboard API, as a script or a browser would use it: Node's fetch
 * with a cookie jar of one session cookie and the CSRF token from the sign-in answer.
 */
export interface ApiAnswer<T = any> {
  status: number;
  body: T;
  headers: Headers;
  text: string;
}

export class DashboardClient {
  cookie: string | null = null;
  csrf: string | null = null;

  constructor(readonly base: string) {}

  async request<T = any>(method: string, path: string, opts: { body?: unknown; csrf?: boolean; headers?: Record<string, string> } = {}): Promise<ApiAnswer<T>> {
    const headers: Record<string, string> = { Accept: 'application/json', ...(opts.headers ?? {}) };
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    if (this.cookie) headers.Cookie = this.cookie;
    if (opts.csrf !== false && this.csrf && method !== 'GET') headers['X-CSRF-Token'] = this.csrf;
    const res = await fetch(this.base + path, { method, headers, body: opts.body === undefined ? undefined : JSON.stringify(opts.body), redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      if (pair.startsWith('sonogate.sid=')) this.cookie = /=\s*$/.test(pair) ? null : pair;
    }
    const text = await res.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body, headers: res.headers, text };
  }

  get<T = any>(path: string) {
    return this.request<T>('GET', path);
  }

  post<T = any>(path: string, body: unknown = {}, opts: { csrf?: boolean } = {}) {
    return this.request<T>('POST', path, { body, ...opts });
  }

  async login(username: string, password: string): Promise<ApiAnswer> {
    const r = await this.post('/api/login', { username, password });
    if (r.status === 200) this.csrf = r.body.csrfToken;
    return r;
  }
}
