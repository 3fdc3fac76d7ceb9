// Traces (v2 and v3), assessments and trace artifacts (reference §3 "Traces", §4, §5 /v1/traces).
// MLflow 3.11.1's auth app checks none of these but the 2.0 trace-artifact route (fixed upstream
// after 3.11.1 by #23014 and #23317); here a trace is checked on its experiment like a run.
import {
  experiment, experiments, inPath, registeredModel, run, trace,
  type RouteDef,
} from './route-rule.ts';

const V2 = '/{api,ajax-api}/2.0/mlflow';
const V3 = '/{api,ajax-api}/3.0/mlflow';
const UNCHECKED = 'auth app 3.11.1: unchecked (#23014)';
/** The tag MLflow reads a trace's data location from (mlflow.artifactLocation) is for admins only. */
/**
 * Where MLflow keeps a trace's data (set by the server when the trace starts): get-trace-artifact
 * reads traces.json and attachments from the place it names, so moving it would open another
 * experiment's traces to whoever may tag this one.
 */
const TRACE_TAG = {
  on: 'trace', keyField: 'key', adminOnly: { key: 'mlflow.artifactLocation', why: "MLflow serves a trace's data from the place it names" },
} as const;

export const TRACE_ROUTES: readonly RouteDef[] = [
  { at: `POST ${V2}/traces`, find: [experiment('EDIT')], deviation: UNCHECKED },
  // StartTraceV3 brings its own trace id, and MLflow merges an existing trace of that id into the
  // request's experiment (moving it there, with its previews and spans), and attaches the body's
  // assessments to the trace each names: every trace id named is checked where it is now.
  {
    at: `POST ${V3}/traces`,
    find: [
      experiment('EDIT', 'trace.trace_info.trace_location.mlflow_experiment.experiment_id'),
      { ...trace('EDIT', 'trace.trace_info.trace_id'), ifExists: true },
    ],
    namesTraces: 'start-trace',
    deviation: `${UNCHECKED}; a trace location that is not an MLflow experiment is refused; an existing trace of the id given (or named by an assessment) needs EDIT where it is`,
  },
  { at: `PATCH ${V2}/traces/{request_id}`, find: [inPath('trace', 'EDIT', 'request_id')], deviation: UNCHECKED },
  { at: `GET ${V2}/traces/{request_id}/info`, find: [inPath('trace', 'READ', 'request_id')], deviation: UNCHECKED },
  { at: `GET ${V3}/traces/{trace_id}`, find: [inPath('trace', 'READ', 'trace_id')], deviation: UNCHECKED },
  { at: `GET ${V3}/traces/get`, find: [trace('READ', 'trace_id')], deviation: UNCHECKED },
  { at: `GET ${V3}/traces/batchGet`, find: [trace('READ', 'trace_ids[]')], deviation: UNCHECKED },
  { at: `POST ${V3}/traces/batchGetInfos`, find: [trace('READ', 'trace_ids[]')], deviation: UNCHECKED },
  { at: `PATCH ${V2}/traces/{request_id}/tags`, find: [inPath('trace', 'EDIT', 'request_id')], writesTags: TRACE_TAG, deviation: UNCHECKED },
  { at: `PATCH ${V3}/traces/{trace_id}/tags`, find: [inPath('trace', 'EDIT', 'trace_id')], writesTags: TRACE_TAG, deviation: UNCHECKED },
  { at: `DELETE ${V2}/traces/{request_id}/tags`, find: [inPath('trace', 'EDIT', 'request_id')], writesTags: TRACE_TAG, deviation: UNCHECKED },
  { at: `DELETE ${V3}/traces/{trace_id}/tags`, find: [inPath('trace', 'EDIT', 'trace_id')], writesTags: TRACE_TAG, deviation: UNCHECKED },
  // Searches name their experiments; an empty list would mean "all of them".
  { at: `GET ${V2}/traces`, find: [experiments('READ')], deviation: `${UNCHECKED}; at least one experiment id is required` },
  {
    at: `POST ${V3}/traces/search`, find: [experiments('READ', 'locations[].mlflow_experiment.experiment_id')],
    deviation: `${UNCHECKED}; every location must be an MLflow experiment, and at least one is required`,
  },
  { at: `POST ${V3}/traces/metrics`, find: [experiments('READ')], deviation: `${UNCHECKED}; at least one experiment id is required` },
  { at: `POST ${V3}/traces/calculate-filter-correlation`, find: [experiments('READ')], deviation: `${UNCHECKED}; at least one experiment id is required` },
  { at: `POST ${V2}/traces/delete-traces`, find: [experiment('MANAGE')], deviation: `${UNCHECKED}; deleting is MANAGE` },
  { at: `POST ${V3}/traces/delete-traces`, find: [experiment('MANAGE')], deviation: `${UNCHECKED}; deleting is MANAGE` },
  { at: `POST ${V2}/traces/link-to-run`, find: [run('EDIT'), trace('EDIT', 'trace_ids[]')], deviation: UNCHECKED },
  {
    at: `POST ${V2}/traces/link-prompts`, find: [trace('EDIT', 'trace_id'), registeredModel('READ', 'prompt_versions[].name')],
    deviation: `${UNCHECKED}; the linked prompts (registered models) must be readable too`,
  },
  // No handler in 3.11.1 (404); checked anyway in case a later release adds one.
  { at: `GET ${V2}/unified-traces`, find: [experiments('READ')], deviation: `${UNCHECKED}; no handler upstream` },
  { at: `GET ${V2}/get-online-trace-details`, find: [trace('READ', 'trace_id')], deviation: `${UNCHECKED}; no handler upstream` },
  // Assessments belong to a trace. The create route's path fills `assessment.trace_id`: both must agree.
  { at: `GET ${V3}/traces/{trace_id}/assessments/{assessment_id}`, find: [inPath('trace', 'READ', 'trace_id')], deviation: UNCHECKED },
  { at: `POST ${V3}/traces/{trace_id}/assessments`, find: [inPath('trace', 'EDIT', 'trace_id', 'assessment.trace_id')], deviation: UNCHECKED },
  { at: `PATCH ${V3}/traces/{trace_id}/assessments/{assessment_id}`, find: [inPath('trace', 'EDIT', 'trace_id', 'assessment.trace_id')], deviation: UNCHECKED },
  { at: `DELETE ${V3}/traces/{trace_id}/assessments/{assessment_id}`, find: [inPath('trace', 'EDIT', 'trace_id')], deviation: UNCHECKED },
  // Flask routes of the UI (request.args only).
  { at: 'GET /ajax-api/2.0/mlflow/get-trace-artifact', find: [trace('READ', 'request_id', 'query')], checksPaths: [{ from: 'query', field: 'path', kind: 'relative' }] },
  {
    at: 'GET /ajax-api/3.0/mlflow/get-trace-artifact', find: [trace('READ', 'request_id', 'query')], checksPaths: [{ from: 'query', field: 'path', kind: 'relative' }],
    deviation: 'auth app 3.11.1: unchecked (#23317); READ on the trace, as on the 2.0 route',
  },
  // OTLP (FastAPI, uvicorn only): protobuf body, maybe gzip/deflate, experiment in a header. MLflow
  // adds each span to the trace of its trace_id where that trace is, or creates it in the header's
  // experiment: every trace id in the payload is checked where it is now (otlp-*.ts).
  {
    at: 'POST /v1/traces', find: [experiment('EDIT', 'x-mlflow-experiment-id', 'header')], namesTraces: 'otlp',
    deviation: 'spans of an existing trace need EDIT on its experiment; only application/x-protobuf is taken from non-admins; compressed bodies are bounded (authz.maxDecompressedBody)',
  },
];

/**
 * The trace ids of a StartTraceV3 body's assessments (`trace.trace_info.assessments[].trace_id`,
 * either spelling), which MLflow attaches to the trace each names; an assessment without one goes
 * to the trace being started. Not a table field: an element without the field is fine here.
 */
export function assessmentTraceIds(body: unknown): string[] {
  const object = (value: unknown): Record<string, unknown> | undefined =>
    typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  const traceMessage = object(object(body)?.trace);
  const info = object(traceMessage?.trace_info ?? traceMessage?.traceInfo);
  const assessments = info?.assessments;
  if (!Array.isArray(assessments)) return [];
  const ids: string[] = [];
  for (const assessment of assessments) {
    for (const key of ['trace_id', 'traceId']) {
      const id = object(assessment)?.[key];
      if (typeof id === 'string' && id !== '') ids.push(id);
    }
  }
  return ids;
}
