// Every case, in the order they run. Cheap, steady cases first; the flood (which leaves hashing
// work behind), idle-rss, slow-clients and shared-state (which start their own gateways) last.
import type { CaseName } from '../lib/options.ts';
import { authzLogMetric } from './authz-log-metric.ts';
import type { BenchCase } from './bench-case.ts';
import { forwarders } from './forwarders.ts';
import { guessingFlood } from './guessing-flood.ts';
import { idleRss } from './idle-rss.ts';
import { sharedState } from './shared-state.ts';
import { slowClients } from './slow-clients.ts';
import { latencyOneConnection, smallBasic, smallBearer, smallNoauth } from './small-requests.ts';
import { streamDown, streamUp } from './streaming.ts';
import { tlsHandshake } from './tls-handshake.ts';

export const ALL_CASES: Record<CaseName, BenchCase> = {
  'small-basic': smallBasic,
  'small-bearer': smallBearer,
  'small-noauth': smallNoauth,
  'latency-1conn': latencyOneConnection,
  'authz-log-metric': authzLogMetric,
  'tls-handshake': tlsHandshake,
  'stream-up': streamUp,
  'stream-down': streamDown,
  'guessing-flood': guessingFlood,
  'idle-rss': idleRss,
  'slow-clients': slowClients,
  'shared-state': sharedState,
  forwarders,
};
