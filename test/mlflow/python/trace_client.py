"""The real MLflow client's tracing, as a user writes it: @mlflow.trace and mlflow.start_span.

Reads {"experiment": name} on stdin. Traces two calls into that experiment (spans go to the server
over OTLP, then the client sends the trace's start), reads them back with mlflow.get_trace, and
prints {"trace_ids": [...], "read_back": [{"trace_id", "experiment_id", "spans": [names]}]}.
"""
import json
import sys

import mlflow

spec = json.load(sys.stdin)
mlflow.set_experiment(spec["experiment"])


@mlflow.trace(name="predict")
def predict(x):
    with mlflow.start_span(name="inner") as span:
        span.set_inputs({"x": x})
        span.set_outputs({"y": x * 2})
    return x * 2


trace_ids = []
for x in (1, 2):
    predict(x)
    trace_ids.append(mlflow.get_last_active_trace_id())

flush = getattr(mlflow, "flush_trace_async_logging", None)
if flush:
    flush(terminate=True)

read_back = []
for trace_id in trace_ids:
    trace = mlflow.get_trace(trace_id)
    read_back.append({
        "trace_id": trace.info.trace_id,
        "experiment_id": trace.info.experiment_id,
        "spans": sorted(span.name for span in trace.data.spans),
    })

print(json.dumps({"trace_ids": trace_ids, "read_back": read_back}))
