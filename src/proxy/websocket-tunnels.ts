// The open WebSocket tunnels: closed with a proper close frame when the gateway shuts down, and
// when the session that opened one is signed out (re-checked every watch interval).
import type { Duplex } from 'node:stream';
import type { RequestContext } from '../context/request-context.ts';
import type { Logger } from '../log/logger.ts';

/** RFC 6455 close codes the gateway sends. */
export const GOING_AWAY = 1001;
const POLICY_VIOLATION = 1008;

interface Tunnel {
  /** The upgrade's request context: its id and user for the log. */
  ctx: RequestContext;
  /** Undefined while the upstream has not answered the upgrade. */
  upstream?: Duplex;
  /** For a tunnel opened with the session cookie: why it may no longer stay open, or undefined. */
  ended?: () => string | undefined;
}

/** An unmasked close frame from the server: code and a short reason (at most 123 bytes). */
function closeFrame(code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8').subarray(0, 123);
  const frame = Buffer.alloc(4 + text.length);
  frame[0] = 0x88; // FIN + opcode 8 (close)
  frame[1] = 2 + text.length;
  frame.writeUInt16BE(code, 2);
  text.copy(frame, 4);
  return frame;
}

export class WebSocketTunnels {
  private readonly open = new Map<Duplex, Tunnel>();

  /** Tunnels open now (mlgate_websocket_tunnels). */
  get size(): number {
    return this.open.size;
  }
  private timer?: NodeJS.Timeout;

  constructor(private readonly logger: Logger) {}

  add(client: Duplex, tunnel: Tunnel): void {
    this.open.set(client, tunnel);
    client.once('close', () => this.open.delete(client));
  }

  /** The upstream took the upgrade: from here on the client is owed a close frame, not a cut. */
  connected(client: Duplex, upstream: Duplex): void {
    const tunnel = this.open.get(client);
    if (tunnel) tunnel.upstream = upstream;
  }

  /**
   * The upstream's side is stopped first so the close frame is not written into the middle of one
   * of its frames (up to what was already handed to the socket), then the client gets the frame.
   */
  close(client: Duplex, code: number, reason: string): void {
    const tunnel = this.open.get(client);
    this.open.delete(client);
    if (!tunnel?.upstream || client.destroyed) {
      client.destroy();
      tunnel?.upstream?.destroy();
      return;
    }
    tunnel.upstream.unpipe(client);
    tunnel.upstream.destroy();
    client.end(closeFrame(code, reason));
    // A client that does not answer the close frame is cut off shortly after.
    setTimeout(() => client.destroy(), 1000).unref();
  }

  closeAll(code: number, reason: string): void {
    for (const client of [...this.open.keys()]) this.close(client, code, reason);
  }

  /** Re-checks the sessions behind cookie-opened tunnels every `intervalMs`. */
  start(intervalMs: number): void {
    this.timer = setInterval(() => this.recheck(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  recheck(): void {
    for (const [client, tunnel] of this.open) {
      const reason = tunnel.ended?.();
      if (reason === undefined) continue;
      this.logger.info({ reqId: tunnel.ctx.id, user: tunnel.ctx.principal?.user, reason }, 'WebSocket closed: its session ended');
      this.close(client, POLICY_VIOLATION, reason);
    }
  }
}
