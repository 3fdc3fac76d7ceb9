// The MLflow-shaped upstream every target forwards to. Native where possible, so it leaves CPU to
// the proxies: one nginx worker answers the API routes and serves the 1 GiB download (sendfile);
// uploads go on to a small Node sink that reads the whole body before answering (see
// node-upstream.ts for why nginx's own `return` cannot be the sink).
//
// API routes answer `{}`, except the two look-ups mlgate's authorization step makes: runs/get and
// experiments/get answer in MLflow's shape for the bench's run and experiment, and 404
// RESOURCE_DOES_NOT_EXIST for any other (lib/mlflow-fixture.ts). Those two are logged, one line
// each, to `lookupLog`, so a case can count the look-ups a gateway made while it was measured.
import { HOST, freePort, waitForHttp } from '../lib/net.ts';
import { startProcess, type Started } from '../lib/processes.ts';
import { BENCH_EXPERIMENT_ID, BENCH_RUN_ID, EXPERIMENTS_GET, EXPERIMENT_JSON, NON_API_LOG_METRIC, RUNS_GET, RUN_JSON, notFoundJson } from '../lib/mlflow-fixture.ts';
import { REPO_ROOT, TSX, type Workspace } from '../lib/workspace.ts';
import { nginxPreamble, nginxTempPaths, startNginx, waitForNginx } from './nginx-process.ts';

export interface Upstream {
  url: string;
  /** "nginx (1 worker) + Node upload sink" or "Node": printed with the environment. */
  kind: string;
  processes: Started[];
  /** One line per runs/get or experiments/get answered (the gateways' authorization look-ups). */
  lookupLog: string;
}

export async function startUpstream(ws: Workspace, nginxAvailable: boolean): Promise<Upstream> {
  const lookupLog = ws.path('upstream-lookups.log');
  const sinkPort = await freePort();
  const sink = startProcess('node upstream', process.execPath, ['--import', TSX, 'bench/servers/node-upstream.ts', String(sinkPort), ws.path('www'), lookupLog], { cwd: REPO_ROOT });
  await waitForHttp(`http://${HOST}:${sinkPort}/health`, sink);
  if (!nginxAvailable) return { url: `http://${HOST}:${sinkPort}`, kind: 'Node (nginx not installed)', processes: [sink], lookupLog };

  const port = await freePort();
  const dir = ws.path('upstream-nginx');
  // One worker: the upstream stands in for MLflow and should not take a core from the proxy under test.
  const config = `${nginxPreamble(dir, '1')}
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/json;
  log_format lookup '$msec $request_uri';
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
    # mlgate's authorization look-ups, answered as MLflow answers them (lib/mlflow-fixture.ts).
    location = ${RUNS_GET} {
      access_log ${lookupLog} lookup;
      if ($arg_run_id = "${BENCH_RUN_ID}") { return 200 '${RUN_JSON}'; }
      return 404 '${notFoundJson('Run', '$arg_run_id')}';
    }
    location = ${EXPERIMENTS_GET} {
      access_log ${lookupLog} lookup;
      if ($arg_experiment_id = "${BENCH_EXPERIMENT_ID}") { return 200 '${EXPERIMENT_JSON}'; }
      return 404 '${notFoundJson('Experiment', '$arg_experiment_id')}';
    }
    # The same answer as log-metric on a path outside MLflow's API (authz-log-metric's "off" row).
    location = ${NON_API_LOG_METRIC} { return 200 "{}"; }
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
  return { url: `http://${HOST}:${port}`, kind: 'nginx (1 worker) for API routes and downloads, Node sink for uploads', processes: [sink, nginx], lookupLog };
}
