// A real PostgreSQL (Debian's `postgresql` package) for the scale-out tests: several MLflow servers on
// one backend store, as MLflow's own scale-out runs them. A throwaway cluster in a temporary
// directory, on 127.0.0.1 and a free port, no durability (fsync off): nothing in it outlives the run.
// PostgreSQL refuses to run as root, so under root it runs as the `postgres` system user the package
// creates (runuser), which then owns the directory.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './tls.ts';

/** Where Debian puts the server's programs (not on PATH): /usr/lib/postgresql/<major>/bin, newest first. */
function postgresBinDir(): string | undefined {
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const majors = readdirSync(debian).filter((name) => /^\d+$/.test(name)).sort((x, y) => Number(y) - Number(x));
    for (const major of majors) if (existsSync(join(debian, major, 'bin', 'initdb'))) return join(debian, major, 'bin');
  }
  // Elsewhere (a distribution that puts them on PATH, or Homebrew): pg_config knows.
  const pgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const bin = pgConfig.status === 0 ? pgConfig.stdout.trim() : '';
  return bin && existsSync(join(bin, 'initdb')) ? bin : undefined;
}

interface RunAs {
  /** Prefix for every PostgreSQL command: runuser under root, nothing otherwise. */
  prefix: string[];
  uid?: number;
  gid?: number;
}

function runAs(): RunAs | string {
  if (process.getuid?.() !== 0) return { prefix: [] };
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) return 'running as root, and there is no "postgres" user to run PostgreSQL as (it refuses root)';
  if (spawnSync('runuser', ['--help'], { stdio: 'ignore' }).status !== 0) return 'running as root without runuser (util-linux) to run PostgreSQL as "postgres"';
  return { prefix: ['runuser', '-u', 'postgres', '--'], uid: Number(uid.stdout), gid: Number(gid.stdout) };
}

/** Why PostgreSQL cannot be started here (one line, naming how to get it), or undefined when it can. */
export function postgresProblem(): string | undefined {
  if (!postgresBinDir()) return 'no PostgreSQL server programs (initdb, postgres): apt-get install postgresql (.ci/run installs it)';
  const as = runAs();
  return typeof as === 'string' ? as : undefined;
}

export interface TestPostgres {
  port: number;
  /** A new, empty database; its URL as SQLAlchemy (MLflow's --backend-store-uri) takes it. */
  createDatabase(name: string): string;
  /** What the server printed so far. */
  log(): string;
  stop(): Promise<void>;
}

const SUPERUSER = 'mlgate';
const running = new Set<number>();
process.once('exit', () => {
  for (const pid of running) {
    try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

export async function startTestPostgres(): Promise<TestPostgres> {
  const bin = postgresBinDir();
  const as = runAs();
  if (!bin || typeof as === 'string') throw new Error(postgresProblem());
  const dir = mkdtempSync(join(tmpdir(), 'mlgate-postgres-'));
  if (as.uid !== undefined) chownSync(dir, as.uid, as.gid!);
  const data = join(dir, 'data');
  const run = (program: string, args: string[]) => {
    const [command, ...rest] = [...as.prefix, join(bin, program), ...args];
    return spawnSync(command!, rest, { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  };
  // Trust on loopback: only this run's processes reach 127.0.0.1:<a free port>, and MLflow then needs no password.
  const init = run('initdb', ['-D', data, '-U', SUPERUSER, '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']);
  if (init.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (${init.status}):\n${init.stdout}${init.stderr}`);
  }
  const port = await freePort();
  const logPath = join(dir, 'postgres.log');
  const logFd = openSync(logPath, 'a');
  if (as.uid !== undefined) chownSync(logPath, as.uid, as.gid!);
  const [command, ...args] = [
    ...as.prefix, join(bin, 'postgres'), '-D', data, '-k', dir, '-p', String(port), '-h', '127.0.0.1',
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=100',
  ];
  // Its own process group: runuser, the postmaster and its backends are stopped together.
  const child = spawn(command!, args, { cwd: dir, detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const pid = child.pid!;
  running.add(pid);
  let exited: number | null | undefined;
  child.on('exit', (code) => { exited = code; });
  const log = () => { try { return readFileSync(logPath, 'utf8'); } catch { return ''; } };

  const stop = async () => {
    if (running.has(pid)) {
      // SIGINT is PostgreSQL's fast shutdown: sessions ended, no waiting for clients to leave.
      try { process.kill(-pid, 'SIGINT'); } catch { /* gone */ }
      const deadline = Date.now() + 10_000;
      while (exited === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
      running.delete(pid);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== undefined) {
      const printed = log();
      await stop();
      throw new Error(`postgres exited with ${exited} before accepting connections:\n${printed.slice(-3000)}`);
    }
    // Listening is not yet accepting sessions (recovery, start-up): psql's "select 1" is.
    if (await answers(port) && run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', SUPERUSER, '-d', 'postgres', '-Atc', 'select 1']).status === 0) break;
    if (Date.now() > deadline) {
      const printed = log();
      await stop();
      throw new Error(`postgres did not accept connections on port ${port} in time:\n${printed.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  return {
    port,
    createDatabase(name) {
      const made = run('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', SUPERUSER, name]);
      if (made.status !== 0) throw new Error(`createdb ${name} failed (${made.status}):\n${made.stdout}${made.stderr}`);
      return `postgresql://${SUPERUSER}@127.0.0.1:${port}/${name}`;
    },
    log,
    stop,
  };
}

