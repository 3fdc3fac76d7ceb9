// A real Redis (Debian's redis-server) for the shared-state tests: on 127.0.0.1, a free port, no
// persistence; stop and start it again (same port) to play an outage.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './tls.ts';

export interface TestRedis {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
}


function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.write('PING\r\n'); });
    // Without the password, PING answers -NOAUTH: the server is up all the same.
    socket.once('data', (data) => { socket.destroy(); resolve(/^(\+PONG|-NOAUTH)/.test(data.toString())); });
    socket.once('error', () => resolve(false));
  });
}

/** `password`: the server asks for it (requirepass). */
export async function startTestRedis(password?: string): Promise<TestRedis> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(password ? ['--requirepass', password] : [])], { stdio: 'ignore' });
    for (let tries = 0; tries < 100; tries++) {
      if (await answers(port)) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`redis-server did not answer on port ${port}`);
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, stop, start };
}
