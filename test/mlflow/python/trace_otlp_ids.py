"""The trace ids MLflow's OTLP route (POST /v1/traces) reads from each payload, with MLflow's own code.

Reads {"payloads": [base64, ...]} on stdin. For each, as mlflow/server/otel_api.py does:
ExportTraceServiceRequest.ParseFromString, no resource_spans is a refusal, then every span of every
scope_spans through Span.from_otel_proto (any failure is a refusal, before anything is logged).
Prints [sorted list of MLflow trace ids | null (refused)], one per payload.
"""
import base64
import json
import sys

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from mlflow.entities.span import Span


def trace_ids(payload):
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(payload)
    except DecodeError:
        return None
    if not request.resource_spans:
        return None
    ids = set()
    for resource_span in request.resource_spans:
        for scope_span in resource_span.scope_spans:
            for otel_span in scope_span.spans:
                try:
                    ids.add(Span.from_otel_proto(otel_span).trace_id)
                except Exception:
                    return None
    return sorted(ids)


payloads = json.load(sys.stdin)["payloads"]
print(json.dumps([trace_ids(base64.b64decode(p)) for p in payloads]))
