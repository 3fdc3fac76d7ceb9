// Browser sign-in as a browser on the gateway's own pages does it: the form at /-/login, and
// sign-out through the confirmation form at /-/logout.
import type { TestGateway } from './gateway.ts';

const HTML = 'text/html,application/xhtml+xml';

function formRequest(target: TestGateway, fields: Record<string, string>, cookie?: string) {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: HTML, origin: target.url, ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(fields).toString(),
  };
}

/** Signs in and returns the session cookie as a browser sends it back ("name=value"). */
export async function signIn(target: TestGateway, user: string, password: string): Promise<string> {
  const res = await target.request('/-/login', formRequest(target, { username: user, password, next: '/' }));
  const pair = (res.headers['set-cookie'] ?? []).map((header) => header.split(';')[0]!).find((cookie) => cookie.includes('mlgate-session='));
  if (res.status !== 303 || !pair) throw new Error(`sign-in as ${user} failed: ${res.status} ${res.text}`);
  return pair;
}

/** Signs out with the confirmation form's token, as the Sign out link does. */
export async function signOut(target: TestGateway, cookie: string): Promise<void> {
  const confirm = await target.request('/-/logout', { headers: { cookie, accept: HTML } });
  const token = /name="token" value="([^"]+)"/.exec(confirm.text)?.[1];
  if (!token) throw new Error(`no sign-out form: ${confirm.status} ${confirm.text}`);
  const res = await target.request('/-/logout', formRequest(target, { token }, cookie));
  if (res.status !== 303) throw new Error(`sign-out failed: ${res.status} ${res.text}`);
}
