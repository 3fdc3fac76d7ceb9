// Caddy as users set it up: `basicauth` with the same bcrypt hashes and `reverse_proxy`, from a
// generated Caddyfile. Admin endpoint off, no automatic HTTPS, listening on 127.0.0.1 only.
import { mkdir, writeFile } from 'node:fs/promises';
import { HOST, freePort, waitForHttp } from '../lib/net.ts';
import { startProcess, type Started } from '../lib/processes.ts';
import type { Workspace } from '../lib/workspace.ts';

const CADDY = 'caddy';

export interface CaddyProxy {
  /** basicauth + reverse_proxy over plain HTTP (Caddy streams bodies by default, so also the stream flavour). */
  auth: string;
  /** The same over HTTPS with the run's certificate. */
  tls: string;
  process: Started;
}

export async function startCaddy(ws: Workspace, upstreamUrl: string): Promise<CaddyProxy> {
  const [plain, tls] = [await freePort(), await freePort()];
  const dir = ws.path('caddy');
  await mkdir(dir, { recursive: true });
  // Caddy 2.6 reads the hash base64-encoded (as `caddy hash-password` printed it before 2.6);
  // 2.6 also takes the raw "$2y$..." form, but base64 works with older and newer Caddy alike.
  const accounts = [ws.user, ...ws.victims].map((u) => `      ${u.name} ${Buffer.from(u.hash).toString('base64')}`).join('\n');
  const site = (address: string, extra: string) => `${address} {
  bind ${HOST}
${extra}  log {
    output file ${ws.path('caddy', 'access.log')}
  }
  basicauth * bcrypt MLflow {
${accounts}
  }
  reverse_proxy ${new URL(upstreamUrl).host}
}
`;
  const caddyfile = `{
  admin off
  auto_https off
  storage file_system ${ws.path('caddy', 'data')}
}
${site(`http://:${plain}`, '')}
${site(`https://:${tls}`, `  tls ${ws.cert} ${ws.key}\n`)}`;
  const file = ws.path('caddy', 'Caddyfile');
  await writeFile(file, caddyfile);
  // Caddy would otherwise write its state under the user's home directory.
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir };
  const caddy = startProcess('caddy', CADDY, ['run', '--config', file, '--adapter', 'caddyfile'], { env, cwd: dir });
  await waitForHttp(`http://${HOST}:${plain}/health`, caddy, 15_000);
  return { auth: `http://${HOST}:${plain}`, tls: `https://${HOST}:${tls}`, process: caddy };
}
