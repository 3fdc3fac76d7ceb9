// What every page of the gateway's own shares: the document around the body, the colour theme
// (light and dark, with a visible keyboard focus), and headers that let nothing load from anywhere.
// The Content-Security-Policy allows a style or script only by its hash, so a page's headers are
// made from the very style and script it sends.
import { createHash } from 'node:crypto';
import { escapeHtml } from '../http/errors.ts';

const THEME_BEFORE = `
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--bg:#fff;--panel:#f6f8fa;--line:#8c959f;--accent:#0860c4;--error:#b3261e}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9da7b3;--bg:#0d1117;--panel:#161b22;--line:#6e7681;--accent:#58a6ff;--error:#ff7b72}}
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);margin:0}
`.trim();

// After the page's own rules, so focus, links and messages look alike on every page.
const THEME_AFTER = `
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
a{color:var(--accent)}
.error{color:var(--error);font-weight:600}
.status{border-left:4px solid var(--accent);padding-left:.75rem}
small,.hint{color:var(--muted);font-size:.875rem}
`.trim();

/** A page's whole stylesheet: the theme around the page's own layout rules. */
export function pageStyle(layoutRules: string): string {
  return `${THEME_BEFORE}\n${layoutRules.trim()}\n${THEME_AFTER}`;
}

/** The management pages' (/-/permissions, /-/tokens) layout: sections, tables, forms; `ownRules` after it. */
const MANAGEMENT_RULES = `
main{max-width:52rem;margin:2rem auto;padding:0 1rem}
h1{font-size:1.5rem;margin:0 0 .5rem}
h2{font-size:1.2rem;margin:2rem 0 .5rem}
section{background:var(--panel);border-radius:.5rem;padding:1rem;margin:0 0 1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:middle;overflow-wrap:anywhere}
td form{margin:0}
fieldset{border:1px solid var(--line);border-radius:.25rem;margin:.75rem 0 0;padding:.5rem .75rem .75rem;display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-end}
legend{font-weight:600;padding:0 .25rem}
label{display:block;font-weight:600;font-size:.875rem}
input,select{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:.25rem;background:var(--bg);color:var(--fg)}
button{font:inherit;font-weight:600;padding:.35rem .9rem;border:0;border-radius:.25rem;background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:transparent;color:var(--accent);border:1px solid var(--accent)}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
`;

export function managementPageStyle(ownRules: string): string {
  return pageStyle(`${MANAGEMENT_RULES.trim()}\n${ownRules.trim()}`);
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Forms post only here, the page is never framed or cached, and only this style (and script) apply. */
export function pageHeaders(style: string, script?: string): Readonly<Record<string, string>> {
  const scriptSource = script === undefined ? '' : ` script-src ${sha256(script)};`;
  return {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    'content-security-policy': `default-src 'none'; style-src ${sha256(style)};${scriptSource} img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'same-origin',
  };
}

/** The whole document: `body` goes in <main>; the favicon is empty so the browser asks for nothing else. */
export function htmlPage(title: string, body: string, style: string, script = ''): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)} · mlgate</title>
<style>${style}</style>
</head><body><main>
${body}
</main>${script ? `<script>${script}</script>` : ''}</body></html>
`;
}
