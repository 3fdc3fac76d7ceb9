// Limits on open connections, in total and per client IP (limits.maxConnections,
// limits.maxConnectionsPerIp). A connection past a limit is closed the moment it is accepted,
// before TLS or HTTP cost anything; connections already open are never touched. A trusted proxy
// (proxy.trustedProxies) carries many clients on its connections, so it is not limited at the door:
// each of its connections counts for the client its latest request came from (X-Forwarded-For, as
// the gateway derives it everywhere), and a request from a client over its limit gets a 503.
import type { IncomingMessage, Server } from 'node:http';
import { isIPv4, type Socket } from 'node:net';
import type { TrustedProxies } from '../context/client-ip.ts';
import type { Logger } from '../log/logger.ts';

interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerIp: number;
}

export interface ConnectionGuard {
  /** Counts (and refuses past the limits) the connections the server accepts. */
  attach(server: Server): void;
  /**
   * For a request on a trusted proxy's connection: counts that connection for `clientIp`; false
   * when that client has more than its share of connections (answer 503, close the connection).
   */
  admit(req: IncomingMessage, clientIp: string): boolean;
  /** Open connections in all (for tests and logs). */
  readonly open: number;
  /**
   * Closes every connection still open, those the HTTP server does not know yet included (waiting
   * for their turn, or mid-handshake): shutdown must not wait for slow clients' timeouts.
   */
  closeAll(): void;
}

/** At most one warning per this long: a flood must not turn into a flood of log lines. */
const WARN_EVERY_MS = 10_000;

/**
 * New TLS connections handed to the TLS layer per turn of the event loop. A handshake costs a
 * millisecond or more of CPU on the one event loop; hundreds of connections arriving at once (slow
 * clients reconnecting together) would otherwise have every handshake done before an established
 * user's next request is read. Past this many in one turn, the rest wait for the next turns (their
 * ClientHello stays buffered and is replayed), so established connections get a turn in between.
 */
const HANDSHAKES_PER_TURN = 8;

export function createConnectionGuard(limits: ConnectionLimits, proxies: TrustedProxies, logger: Logger): ConnectionGuard {
  const perIp = new Map<string, number>();
  let open = 0;
  const sockets = new Set<Socket>();
  let refused = 0;
  let lastWarning = 0;
  /** A trusted proxy's connection (the request's socket) -> the client it now counts for. */
  const attributed = new WeakMap<object, string>();

  const add = (ip: string, delta: number) => {
    const next = (perIp.get(ip) ?? 0) + delta;
    if (next <= 0) perIp.delete(ip);
    else perIp.set(ip, next);
    return next;
  };

  function refuse(socket: Socket, why: string, ip: string): void {
    refused++;
    // RST at once, no FIN handshake to wait on: the cheapest refusal there is.
    socket.resetAndDestroy?.() ?? socket.destroy();
    const now = Date.now();
    if (now - lastWarning < WARN_EVERY_MS) return;
    lastWarning = now;
    logger.warn({ ip, refused, open, maxConnections: limits.maxConnections, maxConnectionsPerIp: limits.maxConnectionsPerIp }, `connection refused: ${why}`);
    refused = 0;
  }

  return {
    attach(server) {
      // The HTTP (or TLS) server's own listeners get the connections the limits let through.
      const handOver = server.listeners('connection') as ((socket: Socket) => void)[];
      server.removeAllListeners('connection');
      const deliver = (socket: Socket) => {
        for (const listener of handOver) listener.call(server, socket);
      };
      // TLS: paced as described at HANDSHAKES_PER_TURN. Plain HTTP has no handshake to pace.
      const paced = 'setSecureContext' in server;
      const queue: Socket[] = [];
      let handedThisTurn = 0;
      let pumping = false;
      const pump = () => {
        handedThisTurn = 0;
        while (queue.length > 0 && handedThisTurn < HANDSHAKES_PER_TURN) {
          const socket = queue.shift()!;
          socket.off('error', ignore);
          if (socket.destroyed) continue;
          handedThisTurn++;
          deliver(socket);
        }
        if (queue.length > 0 || handedThisTurn > 0) setImmediate(pump);
        else pumping = false;
      };
      const admitSocket = (socket: Socket) => {
        if (!paced) return deliver(socket);
        if (queue.length === 0 && handedThisTurn < HANDSHAKES_PER_TURN) {
          handedThisTurn++;
          deliver(socket);
        } else {
          // Until the TLS layer has it, nobody else would handle a reset.
          socket.on('error', ignore);
          queue.push(socket);
        }
        if (!pumping) {
          pumping = true;
          setImmediate(pump);
        }
      };
      server.on('connection', (socket: Socket) => {
        const ip = normalize(socket.remoteAddress);
        if (open >= limits.maxConnections) return refuse(socket, 'too many open connections (limits.maxConnections)', ip);
        // peerIsTrusted reads only req.socket's address, which is this socket's.
        const counted = !proxies.peerIsTrusted({ socket } as IncomingMessage);
        if (counted && (perIp.get(ip) ?? 0) >= limits.maxConnectionsPerIp) return refuse(socket, 'too many open connections from this address (limits.maxConnectionsPerIp)', ip);
        open++;
        sockets.add(socket);
        if (counted) add(ip, 1);
        socket.once('close', () => {
          open--;
          sockets.delete(socket);
          if (counted) add(ip, -1);
        });
        admitSocket(socket);
      });
    },
    admit(req, clientIp) {
      const socket = req.socket;
      if (!proxies.peerIsTrusted(req)) return true;
      const before = attributed.get(socket);
      if (before !== clientIp) {
        if (before === undefined) socket.once('close', () => add(attributed.get(socket)!, -1));
        else add(before, -1);
        attributed.set(socket, clientIp);
        add(clientIp, 1);
      }
      return (perIp.get(clientIp) ?? 0) <= limits.maxConnectionsPerIp;
    },
    get open() {
      return open;
    },
    closeAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

function ignore(): void {}

function normalize(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}
