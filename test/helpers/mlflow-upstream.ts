// An upstream that answers like an MLflow tracking server (started with --serve-artifacts) on the
// paths the tests use, and records what reached it. The tracking and registry API is
// mlflow-tracking-store.ts; this file adds the artifact proxy, the UI page, /health, /version and a
// few test-only paths (/echo, /slow, /truncated...).
import { createHash } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { TrackingStore, type MlflowVersion, type TrackingStoreOptions } from './mlflow-tracking-store.ts';

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body's bytes as received (bodies up to 1 MiB on the non-artifact routes). */
  raw?: Buffer;
  /** The gateway's end of the connection: equal ports mean a reused (kept-alive) connection. */
  remotePort: number;
}

export interface TransferOutcome {
  /** False when the upload or download was cut off before its end (the gateway aborted it). */
  completed: boolean;
  bytes: number;
}

export interface ReceivedArtifact {
  path: string;
  bytes: number;
  sha256: string;
  /** The bytes themselves, for uploads up to 1 MiB (downloaded back as they were). */
  content?: Buffer;
  /** When the first body byte arrived (performance.now()). */
  firstByteAt: number;
}

export interface MlflowUpstream {
  url: string;
  port: number;
  /** The MLflow version answered as (options.version). */
  version: MlflowVersion;
  requests: ReceivedRequest[];
  artifacts: Map<string, ReceivedArtifact>;
  /** Resolves when an artifact upload's first byte reaches the upstream. */
  firstArtifactByte(path: string): Promise<number>;
  /** Resolves when an artifact upload to, or download from, that path ends or is cut off. */
  transferOutcome(path: string): Promise<TransferOutcome>;
  /** WebSocket connections the upstream holds open right now. */
  openWebSockets(): number;
  /** Experiments, runs, models... as MLflow would keep them (test/helpers/mlflow-tracking-store.ts). */
  store: TrackingStore;
  close(): Promise<void>;
}

const SMALL_BODY_LIMIT = 1 << 20;

/** Where MLflow would keep the artifacts (only in the wording of its errors). */
const ARTIFACT_ROOT = '/srv/mlflow/artifacts';

/** The Content-Type MLflow's artifact download gives (mimetypes.guess_type; octet-stream when unknown). */
function artifactContentType(path: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase();
  const types: Record<string, string> = { txt: 'text/plain', log: 'text/plain', csv: 'text/csv', json: 'application/json', yaml: 'application/yaml', html: 'text/html', png: 'image/png' };
  return (ext && types[ext]) || 'application/octet-stream';
}

/**
 * A stand-in for the MLflow UI's index page: its script calls the API the way the UI does (a relative
 * `ajax-api/` URL, POST, JSON) and writes the answer into the page, as does the user MLflow was told.
 */
function uiPage(res: ServerResponse, headers: IncomingHttpHeaders): void {
  const user = String(headers['x-forwarded-user'] ?? '').replace(/[^A-Za-z0-9._@-]/g, '?');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MLflow</title></head><body>
<h1>MLflow</h1>
<p id="user">${user}</p>
<pre id="experiments">loading</pre>
<script>
fetch('ajax-api/2.0/mlflow/experiments/search', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ max_results: 10 }) })
  .then((response) => response.text().then((text) => { document.getElementById('experiments').textContent = response.status + ' ' + text; }))
  .catch((err) => { document.getElementById('experiments').textContent = 'failed: ' + err; });
</script>
</body></html>
`;
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html) });
  res.end(html);
}

/** version, requireJsonContentType, defaultExperiment: see TrackingStoreOptions. */
interface UpstreamOptions extends TrackingStoreOptions {
  /** What GET /version answers instead of `version` (e.g. a release newer than mlgate's route lists); the routes stay `version`'s. */
  reportedVersion?: string;
  /**
   * Answer GET /{api,ajax-api}/3.0/mlflow/server-info as MLflow 3.x does, `{"store_type": "SqlStore",
   * "workspaces_enabled": ...}` with this value (not with `version` 2.17.2, which has no such route).
   * Without it that route is one the fake does not know (404).
   */
  workspacesEnabled?: boolean;
}

export async function startMlflowUpstream(options: UpstreamOptions = {}): Promise<MlflowUpstream> {
  const requests: ReceivedRequest[] = [];
  const artifacts = new Map<string, ReceivedArtifact>();
  const waiters = new Map<string, (at: number) => void>();
  const outcomes = new Map<string, Promise<TransferOutcome>>();
  const outcomeWaiters = new Map<string, (outcome: TransferOutcome) => void>();
  const settleTransfer = (path: string, outcome: TransferOutcome) => {
    const waiter = outcomeWaiters.get(path);
    if (waiter) waiter(outcome);
    else outcomes.set(path, Promise.resolve(outcome));
  };
  const store = new TrackingStore(options);

  /** One level under `dir`, as MLflow lists it, by name: files with their size, directories with is_dir and no size. */
  const listArtifacts = (dir: string) => {
    const under = dir.replace(/^\/+|\/+$/g, '');
    const prefix = under ? `${under}/` : '';
    const entries = new Map<string, { path: string; is_dir: boolean; file_size?: number }>();
    for (const [key, artifact] of artifacts) {
      if (!key.startsWith(prefix)) continue;
      const [name, ...deeper] = key.slice(prefix.length).split('/');
      entries.set(name!, deeper.length ? { path: name!, is_dir: true } : { path: name!, is_dir: false, file_size: artifact.bytes });
    }
    return [...entries.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
  };
  store.artifactLister = listArtifacts;

  const json = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const server = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const path = url.pathname;
    // Both prefixes reach the artifact proxy (reference §1.1).
    const artifactRest = /^\/(?:ajax-)?api\/2\.0\/mlflow-artifacts\/artifacts\/(.+)$/.exec(path)?.[1];

    if (artifactRest !== undefined && req.method === 'PUT') {
      const artifactPath = decodeURIComponent(artifactRest);
      const hash = createHash('sha256');
      let bytes = 0;
      let firstByteAt = 0;
      const kept: Buffer[] = [];
      requests.push({ method: 'PUT', url: req.url ?? '', headers: req.headers, body: '', remotePort: req.socket.remotePort ?? 0 });
      req.on('close', () => settleTransfer(artifactPath, { completed: req.complete, bytes }));
      req.on('data', (chunk: Buffer) => {
        if (!firstByteAt) {
          firstByteAt = performance.now();
          waiters.get(artifactPath)?.(firstByteAt);
        }
        bytes += chunk.length;
        if (bytes <= SMALL_BODY_LIMIT) kept.push(chunk);
        hash.update(chunk);
      });
      req.on('end', () => {
        artifacts.set(artifactPath, { path: artifactPath, bytes, sha256: hash.digest('hex'), firstByteAt, ...(bytes <= SMALL_BODY_LIMIT ? { content: Buffer.concat(kept) } : {}) });
        json(res, 200, {});
      });
      return;
    }
    if (artifactRest !== undefined && req.method === 'GET') {
      // GET .../artifacts/<exp>/<run>/artifacts/generated-<bytes>.bin streams that many bytes; an
      // uploaded file (up to 1 MiB) comes back as it was; anything else is MLflow's 500.
      requests.push({ method: 'GET', url: req.url ?? '', headers: req.headers, body: '', remotePort: req.socket.remotePort ?? 0 });
      const artifactPath = decodeURIComponent(artifactRest);
      const stored = artifacts.get(artifactPath)?.content;
      if (stored) {
        res.writeHead(200, { 'content-type': artifactContentType(artifactPath), 'content-length': stored.length });
        return void res.end(stored);
      }
      const size = Number(/generated-(\d+)\.bin$/.exec(path)?.[1] ?? -1);
      if (size < 0) {
        return json(res, 500, {
          error_code: 'INTERNAL_ERROR',
          message: `The following failures occurred while downloading one or more artifacts from ${ARTIFACT_ROOT}:\n##### File ${artifactPath} #####\n[Errno 2] No such file or directory: '${ARTIFACT_ROOT}/${artifactPath}'`,
        });
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let sent = 0;
      res.on('close', () => settleTransfer(decodeURIComponent(artifactRest), { completed: res.writableFinished, bytes: sent }));
      const pump = () => {
        while (sent < size) {
          const piece = size - sent >= chunk.length ? chunk : chunk.subarray(0, size - sent);
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
      return;
    }

    const chunks: Buffer[] = [];
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received <= SMALL_BODY_LIMIT) chunks.push(chunk);
    });
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const body = raw.toString('utf8');
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, raw, remotePort: req.socket.remotePort ?? 0 });
      // Flask's plain answers: text/html whatever they hold.
      if (path === '/health') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('OK');
      if (path === '/' && req.method === 'GET') return void uiPage(res, req.headers);
      if (path === '/version') return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(options.reportedVersion ?? store.version);
      if (/^\/(?:ajax-)?api\/3\.0\/mlflow\/server-info$/.test(path) && options.workspacesEnabled !== undefined && store.version !== '2.17.2') {
        return json(res, 200, { store_type: 'SqlStore', workspaces_enabled: options.workspacesEnabled });
      }
      if (path === '/echo' || path.startsWith('/echo/')) return json(res, 200, { method: req.method, url: req.url, headers: req.headers, body, bytes: received });
      if (path === '/slow' || path === '/api/2.0/mlflow/slow') return void setTimeout(() => json(res, 200, { slow: true }), Number(url.searchParams.get('ms') ?? 1000));
      if (path === '/truncated') {
        // Promises twice the bytes it sends, then drops the connection: an upstream dying mid-answer.
        const bytes = Number(url.searchParams.get('bytes') ?? 65536);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes * 2 });
        return void res.write(Buffer.alloc(bytes, 1), () => setTimeout(() => req.socket.destroy(), 50));
      }
      if (path === '/response-headers') {
        // Answers with the headers named in the query, e.g. ?Connection=x-private&X-Private=1.
        for (const [name, value] of url.searchParams) res.setHeader(name, value);
        return void res.end('headers');
      }
      if (path === '/redirect') {
        res.writeHead(302, { location: '/echo' });
        return void res.end();
      }
      // MLflow's tracking and registry API, as MLflow answers it (mlflow-tracking-store.ts).
      const versioned = /^\/(?:ajax-)?api\/([23]\.0)(\/.*)$/.exec(path);
      if (versioned) {
        const answer = store.handle(req.method ?? 'GET', versioned[1]!, versioned[2]!, url.searchParams, body, req.headers['content-type']);
        if (answer) {
          res.writeHead(answer.status, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.body) });
          return void res.end(answer.body);
        }
      }
      if (/^\/(?:ajax-)?api\/2\.0\/mlflow-artifacts\/artifacts$/.test(path) && req.method === 'GET') {
        const files = listArtifacts(url.searchParams.get('path') ?? '');
        return json(res, 200, files.length ? { files } : {});
      }
      if (artifactRest !== undefined && req.method === 'DELETE') {
        artifacts.delete(decodeURIComponent(artifactRest));
        return json(res, 200, {});
      }
      const api = /^\/(?:ajax-)?api\/2\.0\/mlflow\/(.+)$/.exec(path)?.[1];
      if (api?.startsWith('runs/') || api?.startsWith('metrics/')) return json(res, 200, {});
      if (api) return json(res, 200, {});
      json(res, 404, { error_code: 'ENDPOINT_NOT_FOUND', message: `no route ${req.method} ${path}` });
    });
  });

  // A WebSocket echo, standing in for anything behind the gateway that upgrades.
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    requests.push({ method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers, body: '', remotePort: req.socket.remotePort ?? 0 });
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => ws.send(isBinary ? data : `echo:${data.toString()}`, { binary: isBinary }));
    });
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    version: store.version,
    requests,
    artifacts,
    firstArtifactByte: (path) => new Promise((resolve) => waiters.set(path, resolve)),
    openWebSockets: () => wss.clients.size,
    store,
    transferOutcome(path) {
      const settled = outcomes.get(path);
      if (settled) return settled;
      const pending = new Promise<TransferOutcome>((resolve) => outcomeWaiters.set(path, resolve));
      outcomes.set(path, pending);
      return pending;
    },
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
