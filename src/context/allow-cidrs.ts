// IP allow-lists (access.allowCidrs, routes[].allowCidrs): which client addresses may use the
// gateway, or one route, at all. Checked in admission before authentication, on the client
// address the request context worked out (src/context/client-ip.ts: the peer, or behind a trusted
// proxy the right-most X-Forwarded-For entry that is not itself a trusted proxy).
import { BlockList, isIP, isIPv4 } from 'node:net';

/** An allow-list; none (an empty or absent list) means every address. */
export interface AllowCidrs {
  allows(ip: string): boolean;
}

/**
 * The list compiled once (entries already validated by the schema: an address, or address/bits).
 * node:net's BlockList matches IPv4-mapped IPv6 addresses (::ffff:10.1.2.3) as their IPv4 address
 * and the reverse, so either spelling, in the list or on the wire, matches.
 */
export function compileAllowCidrs(entries: readonly string[] | undefined): AllowCidrs | undefined {
  if (!entries?.length) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const [address, bits] = entry.split('/') as [string, string | undefined];
    const family = isIPv4(address) ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(bits), family);
  }
  return {
    allows: (ip) => {
      const family = isIP(ip);
      return family !== 0 && list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}
