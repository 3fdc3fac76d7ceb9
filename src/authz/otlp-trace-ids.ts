// The trace ids of an OTLP trace export (opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest,
// binary protobuf), read as MLflow 3's POST /v1/traces reads them, to check each trace where it is.
// A minimal protobuf wire reader for the one path that matters:
//
//   ExportTraceServiceRequest.resource_spans (1) -> ResourceSpans.scope_spans (2)
//     -> ScopeSpans.spans (2) -> Span.trace_id (1, bytes)
//
// Protobuf's rules, as Python's parser applies them: a field whose wire type is not the declared one
// is an unknown field (skipped); a singular field given twice keeps the last value (so a span's
// trace_id is its last one); an embedded message given twice is merged (its repeated fields append,
// so every occurrence is read). Groups (wire types 3, 4), which no OTLP exporter writes, and anything
// malformed are refused rather than skipped in a way the parser might not.

type OtlpTraceIds = { ok: true; traceIds: string[] } | { ok: false; reason: string };

class Malformed extends Error {}

interface Field {
  num: number;
  wire: number;
  /** For length-delimited fields (wire type 2): the bytes. */
  bytes?: Uint8Array;
}

function readVarint(buf: Uint8Array, at: { pos: number }): bigint {
  let result = 0n;
  for (let i = 0; i < 10; i++) {
    if (at.pos >= buf.length) throw new Malformed('a varint runs past the end');
    const byte = buf[at.pos++]!;
    result |= BigInt(byte & 0x7f) << BigInt(7 * i);
    if ((byte & 0x80) === 0) return result;
  }
  throw new Malformed('a varint longer than 10 bytes');
}

function* fields(buf: Uint8Array): Generator<Field> {
  const at = { pos: 0 };
  while (at.pos < buf.length) {
    const key = readVarint(buf, at);
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (num === 0 || key >> 3n > 0x1fffffffn) throw new Malformed(`field number ${key >> 3n}`);
    switch (wire) {
      case 0:
        readVarint(buf, at);
        yield { num, wire };
        break;
      case 1:
      case 5: {
        const size = wire === 1 ? 8 : 4;
        if (at.pos + size > buf.length) throw new Malformed('a fixed-size field runs past the end');
        at.pos += size;
        yield { num, wire };
        break;
      }
      case 2: {
        const length = readVarint(buf, at);
        if (length > BigInt(buf.length - at.pos)) throw new Malformed('a length-delimited field runs past the end');
        const end = at.pos + Number(length);
        yield { num, wire, bytes: buf.subarray(at.pos, end) };
        at.pos = end;
        break;
      }
      default:
        throw new Malformed(`wire type ${wire} (groups are not read)`);
    }
  }
}

/** MLflow's id of an OTLP trace id: `tr-` and the bytes as one big-endian integer in at least 32 hex digits. */
function mlflowTraceId(otelTraceId: Uint8Array): string {
  let hex = Buffer.from(otelTraceId).toString('hex').replace(/^0+/, '');
  if (hex.length < 32) hex = hex.padStart(32, '0');
  return `tr-${hex}`;
}

/** Every distinct trace id the spans of an ExportTraceServiceRequest carry (spans without one name none: MLflow refuses them). */
export function otlpTraceIds(body: Uint8Array): OtlpTraceIds {
  const ids = new Set<string>();
  try {
    for (const top of fields(body)) {
      if (top.num !== 1 || top.wire !== 2) continue;
      for (const resource of fields(top.bytes!)) {
        if (resource.num !== 2 || resource.wire !== 2) continue;
        for (const scope of fields(resource.bytes!)) {
          if (scope.num !== 2 || scope.wire !== 2) continue;
          let traceId: Uint8Array | undefined;
          for (const spanField of fields(scope.bytes!)) {
            if (spanField.num === 1 && spanField.wire === 2) traceId = spanField.bytes!;
          }
          if (traceId !== undefined && traceId.length > 0) ids.add(mlflowTraceId(traceId));
        }
      }
    }
  } catch (err) {
    if (err instanceof Malformed) return { ok: false, reason: err.message };
    throw err;
  }
  return { ok: true, traceIds: [...ids] };
}
