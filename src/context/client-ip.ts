import type { IncomingMessage } from 'node:http';
import { BlockList, isIP, isIPv4 } from 'node:net';

export interface TrustedProxies {
  /** Whether the direct peer is a configured trusted proxy, whose X-Forwarded-* may be kept. */
  peerIsTrusted(req: IncomingMessage): boolean;
  /**
   * The peer address, unless the peer is a trusted proxy: then the right-most X-Forwarded-For entry
   * that is not itself trusted (entries further left are client-supplied and could be forged).
   */
  clientIp(req: IncomingMessage): string;
}

export function trustedProxies(list: readonly string[]): TrustedProxies {
  if (list.length === 0) return { peerIsTrusted: () => false, clientIp: (req) => peerAddress(req) };
  const trusted = new BlockList();
  for (const entry of list) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (bits === undefined) trusted.addAddress(address, family);
    else trusted.addSubnet(address, Number(bits), family);
  }
  const isTrusted = (ip: string) => isIP(ip) !== 0 && trusted.check(ip, isIPv4(ip) ? 'ipv4' : 'ipv6');
  return {
    peerIsTrusted: (req) => isTrusted(peerAddress(req)),
    clientIp(req) {
      const peer = peerAddress(req);
      const forwarded = req.headers['x-forwarded-for'];
      if (!isTrusted(peer) || typeof forwarded !== 'string') return peer;
      const hops = forwarded.split(',').map((hop) => normalize(hop.trim()));
      for (let i = hops.length - 1; i >= 0; i--) {
        const hop = hops[i]!;
        if (!isIP(hop)) return peer;
        if (!isTrusted(hop)) return hop;
      }
      return hops[0] || peer;
    },
  };
}

export function peerAddress(req: IncomingMessage): string {
  return normalize(req.socket.remoteAddress);
}

/** "::ffff:10.0.0.1" -> "10.0.0.1": the form people write in configs and read in logs. */
function normalize(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
}
