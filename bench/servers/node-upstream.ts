// An MLflow-shaped upstream in Node, run as its own process:
//   node --import tsx bench/servers/node-upstream.ts <port> <www-dir> <lookup-log>
// With nginx installed it only takes artifact uploads (nginx's `return` answers before it has read
// the body, and a proxy that sees the answer early may stop forwarding the upload, which would
// flatter it); without nginx it serves every route, answering as upstream.ts's nginx does
// (runs/get and experiments/get in MLflow's shape, logged to <lookup-log>; `{}` elsewhere).
import { appendFileSync, createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import { join, normalize } from 'node:path';
import { BENCH_EXPERIMENT_ID, BENCH_RUN_ID, EXPERIMENTS_GET, EXPERIMENT_JSON, NON_API_LOG_METRIC, RUNS_GET, RUN_JSON, notFoundJson } from '../lib/mlflow-fixture.ts';

const [portArg, wwwDir, lookupLog] = process.argv.slice(2);
if (!portArg || !wwwDir || !lookupLog) throw new Error('usage: node-upstream.ts <port> <www-dir> <lookup-log>');

const ARTIFACTS = '/api/2.0/mlflow-artifacts/artifacts/';

function reply(res: http.ServerResponse, status: number, body: string, type = 'application/json'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0]!;
  if (path.startsWith(ARTIFACTS) && req.method === 'PUT') {
    // Read the whole body at full speed, then answer, as MLflow does once the artifact is stored.
    req.on('data', () => {});
    req.on('end', () => reply(res, 200, '{}'));
    return;
  }
  req.resume();
  if (path === '/health') return reply(res, 200, 'OK', 'text/plain');
  if (path === '/version') return reply(res, 200, '2.17.2', 'text/plain');
  if (path === RUNS_GET || path === EXPERIMENTS_GET) {
    appendFileSync(lookupLog, `${Date.now() / 1000} ${req.url}\n`);
    const query = new URL(req.url ?? '/', 'http://upstream').searchParams;
    if (path === RUNS_GET) {
      const id = query.get('run_id') ?? '';
      return id === BENCH_RUN_ID ? reply(res, 200, RUN_JSON) : reply(res, 404, notFoundJson('Run', id));
    }
    const id = query.get('experiment_id') ?? '';
    return id === BENCH_EXPERIMENT_ID ? reply(res, 200, EXPERIMENT_JSON) : reply(res, 404, notFoundJson('Experiment', id));
  }
  if (path === NON_API_LOG_METRIC) return reply(res, 200, '{}');
  if (path.startsWith('/api/2.0/mlflow/') || path.startsWith('/ajax-api/2.0/mlflow/')) return reply(res, 200, '{}');
  if (path.startsWith(ARTIFACTS) && (req.method === 'GET' || req.method === 'HEAD')) {
    const file = join(wwwDir, normalize(decodeURIComponent(path)));
    stat(file).then((info) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': info.size });
      if (req.method === 'HEAD') return void res.end();
      createReadStream(file, { highWaterMark: 1 << 20 }).pipe(res);
    }, () => reply(res, 404, '{"error_code":"RESOURCE_DOES_NOT_EXIST"}'));
    return;
  }
  reply(res, 404, '{"error_code":"ENDPOINT_NOT_FOUND"}');
});
server.keepAliveTimeout = 75_000;
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write(`listening ${portArg}\n`));
process.on('SIGTERM', () => process.exit(0));
