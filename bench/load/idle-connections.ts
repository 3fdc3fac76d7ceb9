// Opens N keep-alive connections, makes one authenticated request on each, and then holds them
// open and idle, so the gateway's memory can be read with that many clients attached. Run as
// its own process (it needs N descriptors and must not share the runner's event loop):
//   node --import tsx bench/load/idle-connections.ts <url> <count> <holdSeconds> [authorization]
// Prints "ready <open>" once every answer is in, then exits after holdSeconds (or when killed).
import net from 'node:net';

const [urlArg, countArg, holdArg, authorization] = process.argv.slice(2);
if (!urlArg || !countArg || !holdArg) throw new Error('usage: idle-connections.ts <url> <count> <holdSeconds> [authorization]');
const url = new URL(urlArg);
const request = `GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n${authorization ? `Authorization: ${authorization}\r\n` : ''}\r\n`;
const sockets: net.Socket[] = [];
let failures = 0;
let firstError = '';

/** Resolves once the answer's head has arrived; the tiny /health body comes in the same packet. */
function open(): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.write(request));
    let head = '';
    const fail = (why: string) => {
      failures++;
      firstError ||= why;
      socket.destroy();
      resolve();
    };
    socket.setEncoding('latin1');
    socket.on('data', function onData(chunk: string) {
      head += chunk;
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      if (!head.startsWith('HTTP/1.1 200')) return fail(head.slice(0, 40));
      sockets.push(socket);
      resolve();
    });
    socket.on('error', (err) => fail(err.message));
  });
}

// In batches, so the connections do not overflow the gateway's accept backlog all at once.
const count = Number(countArg);
for (let opened = 0; opened < count; opened += 100) {
  await Promise.all(Array.from({ length: Math.min(100, count - opened) }, open));
}
const stillOpen = sockets.filter((socket) => !socket.destroyed).length;
process.stdout.write(`ready ${stillOpen}${failures ? ` failed ${failures} (${firstError})` : ''}\n`);
setTimeout(() => process.exit(0), Number(holdArg) * 1000);
