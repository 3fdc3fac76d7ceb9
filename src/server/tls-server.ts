import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { SecureVersion } from 'node:tls';
import { watchFileChanges } from '../config/watch-file.ts';
import type { Logger } from '../log/logger.ts';
import type { CertificatePaths } from './certificate.ts';

export interface ListenerOptions {
  certificate?: CertificatePaths;
  minVersion: SecureVersion;
  watchIntervalMs: number;
}

export interface Listener {
  server: http.Server;
  stopWatching(): void;
}

function readCertificate(paths: CertificatePaths): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(paths.cert), key: readFileSync(paths.key) };
}

/**
 * An HTTPS server (or plain HTTP with TLS off). The certificate is re-read when its files change,
 * e.g. after a renewal: new handshakes use it, open connections carry on.
 */
export function createListener(options: ListenerOptions, logger: Logger): Listener {
  const common = { keepAliveTimeout: 65_000, headersTimeout: 60_000, requestTimeout: 0 };
  if (!options.certificate) return { server: http.createServer(common), stopWatching: () => {} };
  const paths = options.certificate;
  const server = https.createServer({ ...common, ...readCertificate(paths), minVersion: options.minVersion });
  const reload = () => {
    try {
      server.setSecureContext({ ...readCertificate(paths), minVersion: options.minVersion });
      logger.info({ cert: paths.cert }, 'TLS certificate reloaded');
    } catch (err) {
      // Mid-renewal the key and certificate can disagree for a moment; the next change fixes it.
      logger.error({ cert: paths.cert, err: (err as Error).message }, 'TLS certificate reload failed; keeping the previous one');
    }
  };
  const stops = [watchFileChanges(paths.cert, options.watchIntervalMs, reload), watchFileChanges(paths.key, options.watchIntervalMs, reload)];
  return { server, stopWatching: () => stops.forEach((stop) => stop()) };
}

/** A plain-HTTP port that only sends browsers and clients to the HTTPS one. */
export function createHttpsRedirectServer(httpsPort: number): http.Server {
  return http.createServer((req, res) => {
    const requested = (req.headers.host ?? '').replace(/:\d+$/, '');
    // Only a plain host name or IP literal, so the redirect cannot be bent elsewhere.
    const host = /^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$/.test(requested) ? requested : 'localhost';
    const location = `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${req.url ?? '/'}`;
    res.writeHead(308, { location, 'content-type': 'text/plain', connection: 'close' });
    res.end(`Use ${location}\n`);
  });
}
