// The slow-clients attack of issue 12: <count> unauthenticated connections spread over several
// loopback addresses, each stalling the gateway in one of three ways, reopened as soon as the
// gateway drops it, so that many are open all the time:
//   - headers that trickle in, a byte every 2 s, never finished;
//   - an API request (no credentials: a 401) declaring a 1 MB body, sending a little and then a
//     byte every 2 s;
//   - the sign-in form (POST /-/login) declaring 4 KB, a few bytes and then a byte every 2 s.
// Its own process (it needs <count> descriptors and must not share the runner's event loop):
//   node --import tsx bench/load/slow-clients.ts <url> <count> <addresses,comma,separated> <holdSeconds>
// Prints "ready <open>" once every connection has been opened once, then every second a line
// "stats {"open","opened","droppedByGateway"}", and exits after holdSeconds (or when killed).
import net from 'node:net';
import tls from 'node:tls';

const [urlArg, countArg, addressesArg, holdArg] = process.argv.slice(2);
if (!urlArg || !countArg || !addressesArg || !holdArg) throw new Error('usage: slow-clients.ts <url> <count> <addresses> <holdSeconds>');
const url = new URL(urlArg);
const secure = url.protocol === 'https:';
const port = Number(url.port || (secure ? 443 : 80));
const addresses = addressesArg.split(',');
const count = Number(countArg);
const TRICKLE_MS = 2000;

const openings = [
  `POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nX-Padding: `,
  `POST /api/2.0/mlflow/runs/log-batch HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"run_id": "`,
  `POST /-/login HTTP/1.1\r\nHost: ${url.host}\r\nOrigin: ${url.origin}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\nuser=alice&password=`,
];

let open = 0;
let opened = 0;
let dropped = 0;
let stopping = false;
const live = new Set<net.Socket>();

function openOne(slot: number): Promise<void> {
  return new Promise((resolve) => {
    const localAddress = addresses[slot % addresses.length]!;
    const opening = openings[slot % openings.length]!;
    let connected = false;
    const onConnect = () => {
      connected = true;
      open++;
      opened++;
      socket.write(opening);
      resolve();
    };
    const raw = net.connect({ port, host: url.hostname, localAddress }, secure ? undefined : onConnect);
    const socket: net.Socket = secure ? tls.connect({ socket: raw, rejectUnauthorized: false, servername: 'localhost' }, onConnect) : raw;
    if (secure) raw.on('error', () => socket.destroy());
    live.add(socket);
    const trickle = setInterval(() => { if (!socket.destroyed) socket.write('x'); }, TRICKLE_MS);
    socket.on('data', () => {}); // the 401 and the like: read and ignored
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(trickle);
      live.delete(socket);
      if (connected) {
        open--;
        dropped++;
      }
      resolve();
      // Back at once, as an attacker would be (a short pause so a refusal cannot spin).
      if (!stopping) setTimeout(() => void openOne(slot), connected ? 10 : 200);
    });
  });
}

// In batches, so the connections do not overflow the gateway's accept backlog all at once.
for (let slot = 0; slot < count; slot += 100) {
  await Promise.all(Array.from({ length: Math.min(100, count - slot) }, (_, i) => openOne(slot + i)));
}
process.stdout.write(`ready ${open}\n`);
dropped = 0;
const stats = setInterval(() => process.stdout.write(`stats ${JSON.stringify({ open, opened, droppedByGateway: dropped })}\n`), 1000);
setTimeout(() => {
  stopping = true;
  clearInterval(stats);
  for (const socket of live) socket.destroy();
  process.exit(0);
}, Number(holdArg) * 1000);
