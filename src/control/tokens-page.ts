// The /-/tokens page: the signed-in user's API tokens, a form to make one (shown once, with the line
// a CI job needs), and a button to revoke each. Self-contained like the other pages (no external
// assets, no script), usable with a keyboard and a screen reader; every button is a plain form POST.
import { formatDuration } from '../config/schema.ts';
import { escapeHtml } from '../http/errors.ts';
import { htmlPage, managementPageStyle, pageHeaders } from './page-frame.ts';

const STYLE = managementPageStyle(`
input.token{width:100%;font-family:ui-monospace,monospace}
pre{background:var(--bg);border:1px solid var(--line);border-radius:.25rem;padding:.5rem;overflow-x:auto}
`);

/** Nothing loads from anywhere, no script runs, forms post only here, never framed or cached. */
export const TOKENS_PAGE_HEADERS = pageHeaders(STYLE);

/** What the API and the page show of a token: never its hash. */
export interface TokenView {
  id: string;
  user: string;
  name: string;
  created: string;
  /** null: never expires. */
  expires: string | null;
  expired: boolean;
  /** null: not used since it was made (as far as this gateway knows). */
  last_used: string | null;
  groups: string[];
  external: boolean;
  /** The identity provider that vouched for the owner (null: none named). */
  source: string | null;
}

/** A token just made: the secret, shown this once. */
export type CreatedToken = TokenView & { token: string };

interface TokensPageOptions {
  user: string;
  /** Signed in with the session cookie: show the sign-out link. */
  signOut: boolean;
  tokens: readonly TokenView[];
  /** The user came from an identity provider: their tokens expire within externalMaxTtlMs. */
  external: boolean;
  externalMaxTtlMs: number;
  maxPerUser: number;
  /** The request was authenticated by an API token, which cannot make tokens. */
  byToken: boolean;
  created?: CreatedToken;
  /** The name typed, kept after an error. */
  name?: string;
  notice?: string;
  error?: string;
}

const ACTION = '/-/tokens';
const DAY = 86_400_000;

function hidden(name: string, value: string): string {
  return `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`;
}

/** "2026-06-01 14:03Z" */
function when(iso: string | null, none: string): string {
  return iso === null ? none : `${new Date(iso).toISOString().slice(0, 16).replace('T', ' ')}Z`;
}

/** The expiry choices: [value, label, selected]. Provider users get none past externalMaxTtl, and no "never". */
function expiryChoices(options: TokensPageOptions): Array<[string, string, boolean]> {
  if (options.external) {
    const max = options.externalMaxTtlMs;
    const shorter = [7 * DAY, 30 * DAY, 90 * DAY].filter((ms) => ms < max).map((ms): [string, string, boolean] => [formatDuration(ms), `${ms / DAY} days`, false]);
    return [...shorter, [formatDuration(max), `${formatDuration(max)} (the longest allowed)`, true]];
  }
  return [['7d', '7 days', false], ['30d', '30 days', false], ['90d', '90 days', true], ['365d', '1 year', false], ['never', 'never', false]];
}

export function tokensPage(options: TokensPageOptions): string {
  const parts = ['<h1>API tokens</h1>'];
  parts.push(`<p>Signed in as <strong>${escapeHtml(options.user)}</strong>.${options.signOut ? ' <a href="/-/logout">Sign out</a> ·' : ''} <a href="/">Back to MLflow</a></p>`);
  if (options.error) parts.push(`<p class="error" role="alert">${escapeHtml(options.error)}</p>`);
  if (options.notice) parts.push(`<p class="status" role="status">${escapeHtml(options.notice)}</p>`);
  if (options.created) parts.push(createdSection(options.created));
  parts.push(`<p class="hint">A token lets a CI job or a script act as you, with your permissions, through <code>MLFLOW_TRACKING_TOKEN</code>. Give each job its own and revoke it when the job is gone; you may have up to ${options.maxPerUser} that have not expired.${options.external ? ` You signed in through an identity provider, so your tokens expire within ${escapeHtml(formatDuration(options.externalMaxTtlMs))}: mlgate cannot learn that the provider removed you, and an expiry is what ends the token then.` : ''}</p>`);

  parts.push('<h2 id="yours">Your tokens</h2>');
  if (options.tokens.length === 0) parts.push('<p>None yet.</p>');
  else parts.push(tokenTable(options.tokens));

  parts.push('<h2 id="new">Make a token</h2>');
  if (options.byToken) {
    parts.push('<p>This request was made with an API token, which cannot make more tokens. Sign in to make one.</p>');
  } else {
    const choices = expiryChoices(options).map(([value, label, selected]) => `<option value="${escapeHtml(value)}"${selected ? ' selected' : ''}>${escapeHtml(label)}</option>`).join('');
    parts.push(`<form method="post" action="${ACTION}">
${hidden('action', 'create')}
<fieldset><legend>New token</legend>
<div><label for="name">What it is for</label><input id="name" name="name" required maxlength="100" autocapitalize="none" spellcheck="false" autocomplete="off" value="${escapeHtml(options.name ?? '')}" aria-describedby="name-hint"></div>
<div><label for="expires">Expires after</label><select id="expires" name="expires">${choices}</select></div>
<div><button type="submit">Make token</button></div>
<p id="name-hint" class="hint">e.g. <code>ci-nightly</code>; shown in the list, never secret.</p>
</fieldset>
</form>`);
  }
  return htmlPage('API tokens', parts.join('\n'), STYLE);
}

function createdSection(created: CreatedToken): string {
  const line = `export MLFLOW_TRACKING_TOKEN=${created.token}`;
  return `<section aria-labelledby="created-title">
<h2 id="created-title">Your new token: ${escapeHtml(created.name)}</h2>
<p class="status" role="status">Copy it now: it is shown only this once. ${created.expires === null ? 'It does not expire.' : `It expires ${escapeHtml(when(created.expires, ''))}.`}</p>
<label for="new-token">Token</label>
<input id="new-token" class="token" readonly value="${escapeHtml(created.token)}" autocomplete="off" spellcheck="false">
<p>In the job (e.g. from its secret store), with <code>MLFLOW_TRACKING_URI</code> set to this gateway:</p>
<pre>${escapeHtml(line)}</pre>
<p class="hint">Leave <code>MLFLOW_TRACKING_USERNAME</code> and <code>MLFLOW_TRACKING_PASSWORD</code> unset there: the MLflow client sends those instead of the token when both are set.</p>
</section>`;
}

function tokenTable(tokens: readonly TokenView[]): string {
  const rows = tokens.map((token) => `<tr><td>${escapeHtml(token.name || '-')} <small>${escapeHtml(token.id)}</small></td><td>${when(token.created, '')}</td><td>${when(token.expires, 'never')}${token.expired ? ' <strong>(expired)</strong>' : ''}</td><td>${when(token.last_used, 'never')}</td><td><form method="post" action="${ACTION}">${hidden('action', 'revoke')}${hidden('id', token.id)}<button type="submit" class="secondary" aria-label="Revoke token ${escapeHtml(token.name || token.id)}">Revoke</button></form></td></tr>`);
  return `<table>
<caption class="vh">Your API tokens</caption>
<thead><tr><th scope="col">Name</th><th scope="col">Made</th><th scope="col">Expires</th><th scope="col">Last used</th><th scope="col"><span class="vh">Action</span></th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>`;
}
