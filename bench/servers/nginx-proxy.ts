// nginx as MLflow users set it up in front of `mlflow server`: auth_basic with the same htpasswd
// file, proxy_pass with upstream keep-alive, worker_processes auto, nginx's default access log.
// One instance, one server block per flavour the cases need.
import { HOST, freePort } from '../lib/net.ts';
import { stopProcess, type Started } from '../lib/processes.ts';
import type { Workspace } from '../lib/workspace.ts';
import { nginxPreamble, nginxTempPaths, startNginx, waitForNginx } from './nginx-process.ts';

export interface NginxProxy {
  /** auth_basic, the blog-post set-up. */
  auth: string;
  /** The same without auth_basic: what "no authentication at all" costs. */
  noauth: string;
  /** auth_basic plus the settings artifact streaming needs. */
  stream: string;
  /** HTTPS with the run's certificate, no auth_basic (it would measure bcrypt, not TLS). */
  tls: string;
  /** The master (its workers are found from it); replaced by restart(). */
  process: Started;
  /**
   * Stops and starts nginx again on the same ports. After a run with 50 connections, auth_basic
   * goes on checking bcrypt for requests whose clients have left, for tens of seconds, which
   * would take a core from whatever is measured next.
   */
  restart(): Promise<void>;
}

export async function startNginxProxy(ws: Workspace, upstreamUrl: string): Promise<NginxProxy> {
  const [auth, noauth, stream, tls] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = ws.path('nginx');
  const upstream = new URL(upstreamUrl).host;
  const forward = `      proxy_pass http://mlflow;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;`;
  const authBasic = `      auth_basic "MLflow";
      auth_basic_user_file ${ws.htpasswd};
      proxy_set_header X-Forwarded-User $remote_user;`;
  const config = `${nginxPreamble(dir, 'auto')}
http {
  # nginx's default: an access log line per request, like mlgate's.
  access_log ${ws.path('nginx', 'access.log')};
${nginxTempPaths(dir)}
  upstream mlflow {
    server ${upstream};
    keepalive 64;
  }
  server {
    listen ${HOST}:${auth} backlog=4096;
    location / {
${authBasic}
${forward}
    }
  }
  server {
    listen ${HOST}:${noauth} backlog=4096;
    location / {
${forward}
    }
  }
  server {
    listen ${HOST}:${stream} backlog=4096;
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    location / {
${authBasic}
${forward}
    }
  }
  server {
    listen ${HOST}:${tls} ssl backlog=4096;
    ssl_certificate ${ws.cert};
    ssl_certificate_key ${ws.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
${forward}
    }
  }
}
`;
  const start = async () => {
    const nginx = await startNginx('nginx', dir, config);
    await waitForNginx(`http://${HOST}:${noauth}/health`, nginx, dir);
    return nginx;
  };
  const proxy: NginxProxy = {
    auth: `http://${HOST}:${auth}`,
    noauth: `http://${HOST}:${noauth}`,
    stream: `http://${HOST}:${stream}`,
    tls: `https://${HOST}:${tls}`,
    process: await start(),
    async restart() {
      await stopProcess(proxy.process, 5000);
      proxy.process = await start();
    },
  };
  return proxy;
}
