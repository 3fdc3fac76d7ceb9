// What a person at a terminal reads, made from the JSON lines the logger writes: one line per
// request (time, status, method, path, ms, user) and one per event (time, level, message, then its
// fields as key=value). Written here rather than with pino-pretty: that runs in a worker thread and
// prints every field of a request on lines of their own.
import { Writable } from 'node:stream';

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const NOT_FIELDS: ReadonlySet<string> = new Set(['level', 'time', 'pid', 'hostname', 'msg']);
const RESET = '\x1b[0m';
const DIM = '\x1b[2m';

function levelColour(level: number): string {
  return level >= 50 ? '\x1b[31m' : level >= 40 ? '\x1b[33m' : '';
}

function statusColour(status: number): string {
  return status >= 500 ? '\x1b[31m' : status >= 400 ? '\x1b[33m' : '\x1b[32m';
}

function clock(time: unknown): string {
  const at = new Date(typeof time === 'number' ? time : Date.now());
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  return `${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}.${pad(at.getMilliseconds(), 3)}`;
}

function fieldText(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (value !== null && typeof value === 'object' && 'message' in value) {
    const err = value as { message: unknown; stack?: unknown };
    return typeof err.stack === 'string' ? `${JSON.stringify(err.message)}\n${err.stack}` : JSON.stringify(err.message);
  }
  return JSON.stringify(value);
}

function terminalLine(entry: Record<string, unknown>, colour: boolean): string {
  const paint = (code: string, text: string) => (colour && code ? `${code}${text}${RESET}` : text);
  const time = paint(DIM, clock(entry.time));
  if ((entry.msg === 'request' || entry.msg === 'websocket') && typeof entry.status === 'number') {
    const user = typeof entry.user === 'string' ? ` ${entry.user}` : '';
    const ms = typeof entry.ms === 'number' ? ` ${entry.ms} ms` : '';
    return `${time} ${paint(statusColour(entry.status), String(entry.status))} ${String(entry.method ?? '-')} ${String(entry.path ?? '')}${ms}${user}\n`;
  }
  const level = typeof entry.level === 'number' ? entry.level : 30;
  const fields = Object.keys(entry).filter((key) => !NOT_FIELDS.has(key)).map((key) => `${key}=${fieldText(entry[key])}`);
  const name = paint(levelColour(level), (LEVEL_NAMES[level] ?? String(level)).padEnd(5));
  return `${time} ${name} ${String(entry.msg ?? '')}${fields.length ? paint(DIM, ` ${fields.join(' ')}`) : ''}\n`;
}

/** A destination for the logger that writes terminal lines to `out`. */
export function terminalDestination(out: NodeJS.WritableStream & { isTTY?: boolean }, colour: boolean): Writable {
  let pending = '';
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      pending += chunk.toString();
      let newline: number;
      while ((newline = pending.indexOf('\n')) !== -1) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          out.write(`${line}\n`);
          continue;
        }
        out.write(terminalLine(entry, colour));
      }
      done();
    },
  });
}
