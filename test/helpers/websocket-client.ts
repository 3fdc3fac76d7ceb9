// WebSocket clients for tests: open one through the gateway (trusting only its certificate), or
// collect the HTTP answer it gives an upgrade it does not let through.
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import WebSocket from 'ws';
import type { TestGateway } from './gateway.ts';

export interface UpgradeRefusal {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** wss://127.0.0.1:<port><path> for a TLS gateway (ws:// without TLS). */
function webSocketUrl(target: Pick<TestGateway, 'url'>, path: string): string {
  return target.url.replace(/^http/, 'ws') + path;
}

export function openWebSocket(target: Pick<TestGateway, 'url' | 'ca'>, path: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(webSocketUrl(target, path), { ca: target.ca, headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      res.resume();
      reject(new Error(`the upgrade of ${path} was answered ${res.statusCode}`));
    });
    ws.once('error', reject);
  });
}

export function upgradeRefusal(target: Pick<TestGateway, 'url' | 'ca'>, path: string, headers: Record<string, string> = {}): Promise<UpgradeRefusal> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(webSocketUrl(target, path), { ca: target.ca, headers });
    ws.once('open', () => {
      ws.terminate();
      reject(new Error(`the upgrade of ${path} was let through`));
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.once('error', () => {});
  });
}

export function nextMessage(ws: WebSocket): Promise<{ data: string | Buffer; isBinary: boolean }> {
  return new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: isBinary ? (data as Buffer) : data.toString(), isBinary })));
}

/** Sends text and resolves with the next text message (the test upstreams echo "echo:<text>"). */
export async function roundTrip(ws: WebSocket, text: string): Promise<string> {
  const reply = nextMessage(ws);
  ws.send(text);
  return String((await reply).data);
}

export function closeEvent(ws: WebSocket): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
}
