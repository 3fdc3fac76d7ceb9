// A DNS server for tests on 127.0.0.1: every A query gets 127.0.0.1, anything else an empty answer.
// Lets an ACME test CA (pebble -dnsserver) resolve made-up names to the gateway under test.
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';

const TYPE_A = 1;

export interface DnsStub {
  /** host:port, as pebble's -dnsserver takes it. */
  address: string;
  close(): Promise<void>;
}

export async function startDnsStub(): Promise<DnsStub> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (query, peer) => {
    const answer = answerFor(query);
    if (answer) socket.send(answer, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
}

/** RFC 1035 4.1: the question is echoed, then one A record pointing back at it by offset 12. */
function answerFor(query: Buffer): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(4) !== 1) return undefined;
  let end = 12;
  while (end < query.length && query[end] !== 0) end += query[end]! + 1;
  end += 5; // the root label, QTYPE, QCLASS
  if (end > query.length) return undefined;
  const isA = query.readUInt16BE(end - 4) === TYPE_A;
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // ID
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100), 2); // response, authoritative, RD echoed
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(isA ? 1 : 0, 6);
  const record = Buffer.from([0xc0, 0x0c, 0, TYPE_A, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
  return Buffer.concat([header, query.subarray(12, end), ...(isA ? [record] : [])]);
}
