// The gateway's own HTML pages (sign-in, sign-out): self-contained, no external assets, usable with
// a keyboard and a screen reader, and working without JavaScript.
import { escapeHtml } from '../http/errors.ts';
import { htmlPage, pageHeaders, pageStyle } from './page-frame.ts';

const STYLE = pageStyle(`
main{max-width:24rem;margin:10vh auto;padding:1.5rem;background:var(--panel);border-radius:.5rem}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;font-weight:600;margin:1rem 0 .25rem}
input{width:100%;font:inherit;padding:.5rem;border:1px solid var(--line);border-radius:.25rem;background:var(--bg);color:var(--fg)}
input[aria-invalid=true]{border-color:var(--error)}
a.provider{display:block;text-align:center;font-weight:600;padding:.6rem;border:1px solid var(--accent);border-radius:.25rem;text-decoration:none}
button{margin-top:1.25rem;width:100%;font:inherit;font-weight:600;padding:.6rem;border:0;border-radius:.25rem;background:var(--accent);color:#fff;cursor:pointer}
`);

/** Puts the part of the address after "#" (the MLflow UI's own route) back onto the return path. */
const KEEP_FRAGMENT_SCRIPT = `(function(){var n=document.getElementById('next');if(n&&location.hash&&n.value.indexOf('#')<0)n.value+=location.hash;if(location.hash)document.querySelectorAll('a[data-next]').forEach(function(a){if(a.href.indexOf('%23')<0)a.href+=encodeURIComponent(location.hash);});})();`;

/** Headers for every page: nothing loads from anywhere, forms post only here, never framed or cached. */
export const PAGE_HEADERS = pageHeaders(STYLE, KEEP_FRAGMENT_SCRIPT);

function layout(title: string, body: string, script = ''): string {
  return htmlPage(title, body, STYLE, script);
}

interface SignInPageOptions {
  /** The name users know the service by (auth.realm), e.g. "MLflow". */
  service: string;
  next: string;
  username?: string;
  error?: string;
  /** A neutral message, e.g. after signing out. */
  notice?: string;
  /** Who this browser is signed in as already, if anyone. */
  signedInAs?: string;
  /** Identity providers to sign in with (oidc.providers), as buttons beside (or instead of) the form. */
  providers?: readonly { name: string; label: string }[];
  /** The user-name-and-password form (auth.passwordSignIn); true unless said otherwise. */
  passwordForm?: boolean;
}

export function signInPage(options: SignInPageOptions): string {
  const { service, next, error } = options;
  const invalid = error ? ' aria-invalid="true" aria-describedby="error"' : '';
  const focusPassword = Boolean(error && options.username);
  // Signed in already: the form is for switching users, so the notice (with Continue) gets read first.
  const focusUser = !focusPassword && options.signedInAs === undefined;
  const parts = [`<h1>Sign in to ${escapeHtml(service)}</h1>`];
  if (options.notice) parts.push(`<p class="status" role="status">${escapeHtml(options.notice)}</p>`);
  if (options.signedInAs !== undefined) {
    parts.push(`<p class="status">Signed in as <strong>${escapeHtml(options.signedInAs)}</strong>. <a href="${escapeHtml(next)}">Continue</a> · <a href="/-/logout">Sign out</a></p>`);
  }
  if (error) parts.push(`<p id="error" class="error" role="alert">${escapeHtml(error)}</p>`);
  for (const provider of options.providers ?? []) {
    const href = `/-/oidc/start?provider=${encodeURIComponent(provider.name)}&next=${encodeURIComponent(next)}`;
    parts.push(`<p><a class="provider" data-next href="${escapeHtml(href)}">Sign in with ${escapeHtml(provider.label)}</a></p>`);
  }
  if (options.passwordForm !== false) parts.push(`<form method="post" action="/-/login">
<input type="hidden" id="next" name="next" value="${escapeHtml(next)}">
<label for="username">User name</label>
<input id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required value="${escapeHtml(options.username ?? '')}"${invalid}${focusUser ? ' autofocus' : ''}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required${invalid}${focusPassword ? ' autofocus' : ''}>
<button type="submit">Sign in</button>
</form>`);
  if (options.passwordForm !== false) parts.push(`<p class="hint">The MLflow client and scripts sign in with <code>MLFLOW_TRACKING_USERNAME</code> and <code>MLFLOW_TRACKING_PASSWORD</code> instead.</p>`);
  return layout(`Sign in to ${service}`, parts.join('\n'), KEEP_FRAGMENT_SCRIPT);
}

interface SignOutPageOptions {
  user: string;
  token: string;
  error?: string;
  /** The browser also sends a remembered password (HTTP Basic), which signing out cannot clear. */
  basicToo: boolean;
}

export function signOutPage(options: SignOutPageOptions): string {
  const parts = ['<h1>Sign out</h1>'];
  if (options.error) parts.push(`<p class="error" role="alert">${escapeHtml(options.error)}</p>`);
  parts.push(`<p>Signed in as <strong>${escapeHtml(options.user)}</strong>.</p>`);
  parts.push(`<form method="post" action="/-/logout">
<input type="hidden" name="token" value="${escapeHtml(options.token)}">
<button type="submit">Sign out</button>
</form>`);
  if (options.basicToo) parts.push('<p class="hint">This browser also sends a saved password (HTTP Basic); close the browser to make it forget that.</p>');
  parts.push('<p><a href="/">Back to MLflow</a></p>');
  return layout('Sign out', parts.join('\n'));
}

export function messagePage(title: string, message: string, link?: { href: string; text: string }): string {
  const parts = [`<h1>${escapeHtml(title)}</h1>`, `<p>${escapeHtml(message)}</p>`];
  if (link) parts.push(`<p><a href="${escapeHtml(link.href)}">${escapeHtml(link.text)}</a></p>`);
  return layout(title, parts.join('\n'));
}
