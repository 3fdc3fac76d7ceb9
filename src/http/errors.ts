import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PageIdentity, RequestContext } from '../context/request-context.ts';
import type { GatewayError } from './gateway-error.ts';

/** MLflow's REST routes: the client parses JSON errors here and breaks on HTML. */
export function isMlflowApiPath(path: string): boolean {
  // MLflow 3's OTLP endpoint is an API path too: an exporter gets JSON, never a page.
  return path.startsWith('/api/') || path.startsWith('/ajax-api/') || path === '/v1/traces';
}

const TITLES: Record<number, string> = {
  400: 'Bad request', 401: 'Sign-in required', 403: 'Access denied', 404: 'Not found', 413: 'Request too large',
  502: 'MLflow is unreachable', 504: 'MLflow did not answer in time',
};

/**
 * Answers in MLflow's JSON shape on the API paths of MLflow routes (and the gateway's own API), with
 * a small readable page for browsers elsewhere, JSON for other clients.
 */
export function sendError(req: IncomingMessage, res: ServerResponse, error: GatewayError, ctx: Pick<RequestContext, 'id' | 'upstreamPath' | 'route' | 'pageIdentity' | 'bytesOut'>): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const requestId = ctx.id;
  const path = ctx.upstreamPath;
  const wantsJson = (ctx.route?.mlflow !== false && isMlflowApiPath(path)) || path.startsWith('/-/api/') || !acceptsHtml(req);
  const body = wantsJson
    ? JSON.stringify({ error_code: error.code, message: error.message })
    : errorPage(error, requestId, ctx.pageIdentity);
  const length = Buffer.byteLength(body);
  res.writeHead(error.status, {
    ...error.headers,
    'content-type': wantsJson ? 'application/json' : 'text/html; charset=utf-8',
    'content-length': length,
    'cache-control': 'no-store',
  });
  if (req.method === 'HEAD') return void res.end();
  ctx.bytesOut += length;
  res.end(body);
}

function acceptsHtml(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return accept === undefined || accept.includes('text/html') || accept.includes('*/*');
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function identityLine(identity: PageIdentity | undefined): string {
  if (identity?.user !== undefined && identity.signOutPath) {
    return `<p>Signed in as <strong>${escapeHtml(identity.user)}</strong> · <a href="${escapeHtml(identity.signOutPath)}">Sign out</a></p>\n`;
  }
  if (identity?.signInPath) return `<p><a href="${escapeHtml(identity.signInPath)}">Sign in</a></p>\n`;
  return '';
}

function errorPage(error: GatewayError, requestId: string, identity?: PageIdentity): string {
  const title = TITLES[error.status] ?? `Error ${error.status}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)} · mlgate</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1b1f24}code{background:#f0f2f4;padding:0 .25em}small{color:#57606a}</style>
</head><body><main>
<h1>${escapeHtml(title)}</h1>
<p>${escapeHtml(error.message)}</p>
<p><small>Status ${error.status} · request <code>${escapeHtml(requestId)}</code></small></p>
${identityLine(identity)}</main></body></html>
`;
}
