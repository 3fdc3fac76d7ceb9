// TLS clients pinned to the gateway's self-signed certificate, for what http-client.ts cannot send:
// a Host header other than the address dialled, and raw bytes that no HTTP client would write.
import https from 'node:https';
import tls from 'node:tls';

/**
 * An agent that trusts only the gateway's certificate and checks it against the address dialled,
 * so a test can send any Host header (Node would otherwise check the certificate against it).
 */
export function pinnedAgent(ca: string, dialled = '127.0.0.1'): https.Agent {
  return new https.Agent({ ca, checkServerIdentity: (_host, cert) => tls.checkServerIdentity(dialled, cert) });
}

interface RawExchange {
  /** Everything the gateway wrote back, as Latin-1 text. */
  text: string;
  /** The status code of every response in it, in order. */
  statuses: number[];
  /** Whether the gateway closed the connection (rather than the test giving up waiting). */
  closedByGateway: boolean;
}

/**
 * Writes raw bytes over a pinned TLS connection and collects the answer until the gateway closes
 * the connection or stays quiet for `quietMs`.
 */
export function rawTlsExchange(port: number, ca: string, payload: string | Buffer, quietMs = 400): Promise<RawExchange> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca });
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    let settled = false;
    const finish = (closedByGateway: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ text, statuses: responseStatuses(text), closedByGateway });
    };
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(() => finish(false), quietMs);
    };
    socket.once('secureConnect', () => {
      socket.write(payload);
      quiet();
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      quiet();
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A reset after the answer is the gateway closing on a bad request; before it, a failure.
      if (chunks.length) finish(true);
      else if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

/** Walks responses one after another, skipping each body by its Content-Length (or chunks). */
function responseStatuses(text: string): number[] {
  const statuses: number[] = [];
  let at = 0;
  while (at < text.length) {
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(text.slice(at, at + 12));
    const headEnd = text.indexOf('\r\n\r\n', at);
    if (!status || headEnd === -1) break;
    statuses.push(Number(status[1]));
    const head = text.slice(at, headEnd);
    at = headEnd + 4;
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    if (length) at += Number(length[1]);
    else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
      const end = text.indexOf('\r\n0\r\n\r\n', at - 2);
      at = end === -1 ? text.length : end + 7;
    }
  }
  return statuses;
}
