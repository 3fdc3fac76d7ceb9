// Starting an nginx instance of our own: its own prefix, pid file, logs and temp paths in the
// workspace, in the foreground (daemon off) so the master's pid is the one spawn returns.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lastLines, waitForHttp } from '../lib/net.ts';
import { startProcess, type Started } from '../lib/processes.ts';

const NGINX = 'nginx';

/** The parts every instance needs that are not about the benchmark itself. */
export function nginxPreamble(dir: string, workerProcesses: string): string {
  // Running as root, nginx would drop its workers to "nobody", who cannot read the workspace.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes ${workerProcesses};
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 8192; }
`;
}

/** Temp paths inside the instance's directory: the packaged defaults under /var/lib/nginx are not ours. */
export function nginxTempPaths(dir: string): string {
  return ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((kind) => `  ${kind}_temp_path ${join(dir, `${kind}_temp`)};`)
    .join('\n');
}

export async function startNginx(name: string, dir: string, config: string): Promise<Started> {
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'nginx.conf');
  await writeFile(file, config);
  // -e: nginx opens its error log before reading the config; the packaged default is not writable by everyone.
  return startProcess(name, NGINX, ['-p', dir, '-c', file, '-e', join(dir, 'error.log'), '-g', 'daemon off;']);
}

/** Waits for the URL; a failure carries the end of nginx's error log, where nginx says what is wrong. */
export async function waitForNginx(url: string, nginx: Started, dir: string): Promise<void> {
  try {
    await waitForHttp(url, nginx, 15_000);
  } catch (err) {
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    throw new Error(`${(err as Error).message}; error log: ${lastLines(log, 3)}`);
  }
}
