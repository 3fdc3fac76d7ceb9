// The MLflow-shaped upstream every target forwards to. Native where possible, so it leaves CPU to
// the proxies: one nginx worker answers the API routes and serves the 1 GiB download (sendfile);
// uploads go on to a small Node sink that reads the whole body before answering (see
// node-upstream.ts for why nginx's own `return` cannot be the sink).
import { HOST, freePort, waitForHttp } from '../lib/net.ts';
import { startProcess, type Started } from '../lib/processes.ts';
import { REPO_ROOT, TSX, type Workspace } from '../lib/workspace.ts';
import { nginxPreamble, nginxTempPaths, startNginx, waitForNginx } from './nginx-process.ts';

export interface Upstream {
  url: string;
  /** "nginx (1 worker) + Node upload sink" or "Node": printed with the environment. */
  kind: string;
  processes: Started[];
}

export async function startUpstream(ws: Workspace, nginxAvailable: boolean): Promise<Upstream> {
  const sinkPort = await freePort();
  const sink = startProcess('node upstream', process.execPath, ['--import', TSX, 'bench/servers/node-upstream.ts', String(sinkPort), ws.path('www')], { cwd: REPO_ROOT });
  await waitForHttp(`http://${HOST}:${sinkPort}/health`, sink);
  if (!nginxAvailable) return { url: `http://${HOST}:${sinkPort}`, kind: 'Node (nginx not installed)', processes: [sink] };

  const port = await freePort();
  const dir = ws.path('upstream-nginx');
  // One worker: the upstream stands in for MLflow and should not take a core from the proxy under test.
  const config = `${nginxPreamble(dir, '1')}
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/json;
  # Proxies keep their connections to MLflow alive; the upstream must not close them every 1000 requests.
  keepalive_requests 10000000;
  keepalive_timeout 75s;
${nginxTempPaths(dir)}
  upstream upload_sink {
    server ${HOST}:${sinkPort};
    keepalive 16;
  }
  server {
    listen ${HOST}:${port} backlog=4096;
    client_max_body_size 0;
    location = /health { default_type text/plain; return 200 "OK"; }
    location = /version { default_type text/plain; return 200 "2.17.2"; }
    location /api/2.0/mlflow/ { return 200 "{}"; }
    location /ajax-api/2.0/mlflow/ { return 200 "{}"; }
    location /api/2.0/mlflow-artifacts/artifacts/ {
      root ${ws.path('www')};
      default_type application/octet-stream;
      if ($request_method = PUT) {
        proxy_pass http://upload_sink;
      }
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
`;
  const nginx = await startNginx('upstream nginx', dir, config);
  await waitForNginx(`http://${HOST}:${port}/health`, nginx, dir);
  return { url: `http://${HOST}:${port}`, kind: 'nginx (1 worker) for API routes and downloads, Node sink for uploads', processes: [sink, nginx] };
}
