// Runs the mlgate command line at a pseudo-terminal, as a person at a keyboard would: waits for each
// prompt before typing the answer, so what the terminal shows (echo or not) is what a person sees.
// Python's pty module does the terminal work; Node has none without a native addon.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

export const HAVE_PYTHON_PTY = spawnSync('python3', ['-c', 'import pty']).status === 0;

const DRIVER = `
import json, os, pty, sys, time
args, answers = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execvp(args[0], args)
seen = b''
def read_until(text, timeout=30):
    global seen
    deadline = time.time() + timeout
    while text.encode() not in seen and time.time() < deadline:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
for prompt, answer in answers:
    read_until(prompt)
    os.write(fd, answer.encode())
read_until('\\x00never\\x00', timeout=30)
_, status = os.waitpid(pid, 0)
print(json.dumps({'status': os.waitstatus_to_exitcode(status), 'screen': seen.decode('utf8', 'replace')}))
`;

/** What the terminal showed, and the exit status. Each answer is typed once its prompt appears. */
export function runCliAtTerminal(args: string[], answers: [prompt: string, typed: string][], options: { cwd: string; env?: NodeJS.ProcessEnv }): { status: number; screen: string } {
  const command = [process.execPath, '--import', TSX, MAIN, ...args];
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('MLGATE_')));
  const result = spawnSync('python3', ['-c', DRIVER, JSON.stringify([command, answers])], {
    cwd: options.cwd,
    env: { ...env, ...options.env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (result.status !== 0) throw new Error(`terminal driver failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as { status: number; screen: string };
}
