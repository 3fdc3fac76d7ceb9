// The audit log (docs/operations.md, "Audit log"): a separate stream of JSON lines, one per security
// event: who, what, which resource, from where, when; never a secret (no password, no token, no
// cookie: tokens are named by their id). Separate from the operational log so it can be kept, shipped
// and rotated on its own.
//
// Bounded everywhere: under a flood of failed sign-ins or denied requests, the first few lines per
// (client IP, event, reason) in each interval are written and the rest counted, then written as one
// `summary` line at the end of the interval; the table of keys has a cap (beyond it, one counter per
// event). Writes never wait on the disk: past a bounded buffer, lines are dropped, counted, and a
// `dropped` line is written once the stream drains.
import { appendFileSync, createWriteStream, mkdirSync, renameSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import type { Config } from '../config/schema.ts';
import type { Logger } from './logger.ts';

/** The security events, each with what it is about (who, from where and when are added to every line). */
export type AuditEvent =
  /** A browser sign-in (the form or an identity provider) that opened a session. */
  | { event: 'sign-in'; method: string; session?: string; provider?: string }
  /** Credentials that were checked and refused: the sign-in form, or a request's Basic/Bearer (401). */
  | { event: 'sign-in-failed'; method: string; reason: string; attemptedUser?: string }
  /** Too many failed sign-ins: an address or a user name is refused for a while. */
  | { event: 'lockout'; scope: 'ip' | 'user'; lockedUser?: string; lockedForMs: number }
  | { event: 'sign-out'; session?: string; provider?: string }
  /** An API token made or revoked: its id and owner, never the token itself. */
  | { event: 'token-issued'; token: string; owner: string; expires?: string | null }
  | { event: 'token-revoked'; token: string; owner: string }
  | { event: 'grant-set'; resource: string; grantee: string; level: string }
  | { event: 'grant-revoked'; resource: string; grantee: string }
  /** A request refused for who made it (401 without credentials to check, 403). */
  | { event: 'request-denied'; status: number; method?: string; path: string; resource?: string; reason: string }
  /** A request an admin's rights allowed (an admin-only route, or the gateway's own admin API). */
  | { event: 'admin-action'; method?: string; path: string; status: number }
  /** Files re-read on request (SIGHUP), and the policy file whenever a new version is in force. */
  | { event: 'config-reloaded'; files: string[] }
  /** The policy file re-read and in force (its admins: who may do everything). */
  | { event: 'policy-reloaded'; file: string; admins: string[] };

/** Who did it and from where; the request id ties the line to the access log. */
interface AuditWhere {
  user?: string | null;
  ip?: string | null;
  reqId?: string;
}

/** The events a flood is made of: counted per client IP and reason, summarised past a few lines. */
const FLOOD_EVENTS: ReadonlySet<string> = new Set(['sign-in-failed', 'request-denied']);

interface AuditOptions {
  /** A file path (appended to), or "-" / "stdout". */
  file: string;
  /** Rotate when the file passes this many bytes (renamed to <file>.1, a new one opened); 0: never. */
  maxSize: number;
  /** Flood summaries are written at the end of each interval (ms). */
  summaryInterval: number;
  /** Lines written per (client IP, event, reason) per interval before the rest are only counted. */
  linesPerKey?: number;
  /** Keys tracked per interval; beyond, one counter per event. */
  maxKeys?: number;
  /** Bytes waiting for the disk before lines are dropped. */
  maxBuffer?: number;
  /** Tests: the stream to write to instead of the file. */
  destination?: Writable;
}

interface FloodCount {
  ip: string | null;
  event: string;
  reason: string;
  count: number;
}

export class AuditLog {
  private stream: Writable;
  private readonly toFile: boolean;
  private bytes = 0;
  private dropped = 0;
  private floods = new Map<string, FloodCount>();
  /** Events past maxKeys in this interval, per event. */
  private overflow = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private readonly linesPerKey: number;
  private readonly maxKeys: number;
  private readonly maxBuffer: number;
  private closed = false;

  constructor(private readonly options: AuditOptions, private readonly logger?: Logger) {
    this.linesPerKey = options.linesPerKey ?? 5;
    this.maxKeys = options.maxKeys ?? 10_000;
    this.maxBuffer = options.maxBuffer ?? 1024 * 1024;
    this.toFile = options.destination === undefined && options.file !== '-' && options.file !== 'stdout';
    this.stream = this.open();
    this.timer = setInterval(() => this.summarise(), options.summaryInterval);
    this.timer.unref();
  }

  /** Writes one event (or counts it, during a flood). */
  record(event: AuditEvent, where: AuditWhere = {}): void {
    if (this.closed) return;
    const ip = where.ip ?? null;
    if (FLOOD_EVENTS.has(event.event)) {
      const reason = (event as { reason: string }).reason;
      const key = `${ip}\0${event.event}\0${reason}`;
      let flood = this.floods.get(key);
      if (!flood) {
        if (this.floods.size >= this.maxKeys) {
          this.overflow.set(event.event, (this.overflow.get(event.event) ?? 0) + 1);
          return;
        }
        flood = { ip, event: event.event, reason, count: 0 };
        this.floods.set(key, flood);
      }
      flood.count++;
      if (flood.count > this.linesPerKey) return;
    }
    const { event: name, ...details } = event;
    this.write({ time: new Date().toISOString(), event: name, user: where.user ?? null, ip, reqId: where.reqId, ...details });
  }

  /** Re-opens the file (SIGHUP): after logrotate renamed it, lines go to a new file at the path. */
  reopen(): void {
    if (this.closed || !this.toFile) return;
    const old = this.stream;
    try {
      this.stream = this.open();
    } catch (err) {
      // The directory went away or is not writable: keep writing where we were, try again next time.
      this.logger?.error({ err, file: this.options.file }, 'cannot re-open the audit log');
      return;
    }
    old.end();
    this.writeDropped();
  }

  /** Writes what the current interval counted and stops. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.summarise();
    this.closed = true;
    clearInterval(this.timer);
    if (!this.toFile) return;
    await new Promise<void>((resolve) => this.stream.end(resolve));
  }

  /** The end of an interval: one summary line per key that was past its few lines, then a fresh count. */
  summarise(): void {
    const floods = this.floods;
    const overflow = this.overflow;
    this.floods = new Map();
    this.overflow = new Map();
    const time = new Date().toISOString();
    for (const flood of floods.values()) {
      if (flood.count <= this.linesPerKey) continue;
      this.write({ time, event: 'summary', of: flood.event, ip: flood.ip, reason: flood.reason, count: flood.count - this.linesPerKey, total: flood.count, intervalMs: this.options.summaryInterval });
    }
    for (const [event, count] of overflow) this.write({ time, event: 'summary', of: event, ip: null, reason: 'too many distinct clients to count apart', count, intervalMs: this.options.summaryInterval });
  }

  private open(): Writable {
    if (this.options.destination) return this.options.destination;
    if (!this.toFile) return process.stdout;
    try {
      this.bytes = statSync(this.options.file).size;
    } catch {
      this.bytes = 0;
    }
    mkdirSync(dirname(this.options.file), { recursive: true });
    const stream = createWriteStream(this.options.file, { flags: 'a', mode: 0o600 });
    stream.on('error', (err) => this.logger?.error({ err, file: this.options.file }, 'cannot write the audit log'));
    return stream;
  }

  private write(line: Record<string, unknown>): void {
    if (this.stream.destroyed) {
      // The file could not be written (reported once, when it failed); SIGHUP tries again.
      this.dropped++;
      return;
    }
    if (this.stream.writableLength > this.maxBuffer) {
      if (this.dropped++ === 0) this.stream.once('drain', () => this.writeDropped());
      return;
    }
    const text = `${JSON.stringify(line)}\n`;
    this.stream.write(text);
    this.bytes += Buffer.byteLength(text);
    if (this.toFile && this.options.maxSize > 0 && this.bytes >= this.options.maxSize) this.rotate();
  }

  private writeDropped(): void {
    const count = this.dropped;
    this.dropped = 0;
    if (count > 0 && !this.closed) this.write({ time: new Date().toISOString(), event: 'dropped', count, reason: 'the audit log could not keep up with the disk, or could not be written' });
  }

  /** Size rotation: the file becomes <file>.1 (replacing the last one) and a new one is opened. */
  private rotate(): void {
    try {
      renameSync(this.options.file, `${this.options.file}.1`);
    } catch (err) {
      this.logger?.error({ err, file: this.options.file }, 'cannot rotate the audit log');
      this.bytes = 0; // tried again after another maxSize
      return;
    }
    this.reopen();
  }
}

/** The audit log the configuration asks for, or undefined when it is off. */
export function createAuditLog(config: Config['audit'], logger?: Logger): AuditLog | undefined {
  if (!config.enabled) return undefined;
  return new AuditLog({ file: config.file, maxSize: config.maxSize, summaryInterval: config.summaryInterval }, logger);
}

/**
 * What the mlgate commands change (tokens, grants), appended to the same file as the gateway's
 * lines, one synchronous append each: `user` is null and `osUser` names who ran the command.
 * Written only to a file: with "-" the command's own output (a new token) is on stdout.
 */
export function recordCommandEvent(config: Config['audit'], event: AuditEvent): void {
  if (!config.enabled || config.file === '-' || config.file === 'stdout') return;
  const { event: name, ...details } = event;
  let osUser: string | null;
  try {
    osUser = userInfo().username;
  } catch {
    osUser = null;
  }
  const line = { time: new Date().toISOString(), event: name, user: null, ip: null, via: 'command', osUser, ...details };
  try {
    mkdirSync(dirname(config.file), { recursive: true });
    appendFileSync(config.file, `${JSON.stringify(line)}\n`, { mode: 0o600 });
  } catch (err) {
    process.stderr.write(`warning: could not write to the audit log ${config.file}: ${(err as Error).message}\n`);
  }
}
