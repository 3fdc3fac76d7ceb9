"""The request messages of this MLflow's protobuf endpoints, as data for the gateway's check of
request bodies (src/authz/mlflow-messages.json): which message each METHOD + path parses, and every
field of every message involved (name, JSON name, type, repeated, oneof, enum values).

Prints one JSON object. Run with each MLflow version's Python; the test in
test/mlflow/request-messages.test.ts merges them and compares with the committed file.
"""
import inspect
import json
import re

import mlflow
from google.protobuf.descriptor import FieldDescriptor
from mlflow.protos import databricks_pb2
from mlflow.server import handlers

TYPES = {getattr(FieldDescriptor, name): name[len("TYPE_"):].lower() for name in dir(FieldDescriptor) if name.startswith("TYPE_")}
WELL_KNOWN = {"google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Timestamp",
              "google.protobuf.Duration", "google.protobuf.FieldMask", "google.protobuf.Any"}
messages = {}


def describe(message):
    if message.full_name in messages or message.full_name in WELL_KNOWN:
        return
    fields = []
    messages[message.full_name] = {"fields": fields}
    for field in message.fields:
        entry = {"name": field.name, "json": field.json_name, "type": TYPES[field.type]}
        if getattr(field, "is_repeated", None) is True or (not hasattr(field, "is_repeated") and field.label == FieldDescriptor.LABEL_REPEATED):
            entry["repeated"] = True
        if field.containing_oneof is not None:
            entry["oneof"] = field.containing_oneof.name
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                entry["type"] = "map"
                entry["key"] = TYPES[sub.fields_by_name["key"].type]
                value = sub.fields_by_name["value"]
                entry["value"] = TYPES[value.type]
                if value.type == FieldDescriptor.TYPE_MESSAGE:
                    entry["message"] = value.message_type.full_name
                    describe(value.message_type)
                if value.type == FieldDescriptor.TYPE_ENUM:
                    entry["enum"] = {v.name: v.number for v in value.enum_type.values}
                entry.pop("repeated", None)
            else:
                entry["message"] = sub.full_name
                describe(sub)
        if field.type == FieldDescriptor.TYPE_ENUM:
            entry["enum"] = {v.name: v.number for v in field.enum_type.values}
        fields.append(entry)


def uses_protobuf(handler):
    """Whether the handler parses its request with protobuf (_get_request_message), the parser whose
    half-filled messages the gateway must not let through."""
    try:
        return "_get_request_message(" in inspect.getsource(inspect.unwrap(handler))
    except (OSError, TypeError):
        return False


endpoints = {}
services = [handlers.MlflowService, handlers.ModelRegistryService, handlers.MlflowArtifactsService]
if hasattr(handlers, "WebhookService"):
    services.append(handlers.WebhookService)
for service in services:
    for method in service.DESCRIPTOR.methods:
        request_class = service().GetRequestClass(method)
        handler = handlers.get_handler(request_class)
        for endpoint in method.GetOptions().Extensions[databricks_pb2.rpc].endpoints:
            # 2.x registers every endpoint under 2.0; 3.x under the version it was added in.
            paths = handlers._get_paths(endpoint.path, version=endpoint.since.major) if "version" in inspect.signature(handlers._get_paths).parameters else handlers._get_paths(endpoint.path)
            for path in paths:
                template = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", path)
                describe(request_class.DESCRIPTOR)
                endpoints[f"{endpoint.method} {template}"] = {"message": request_class.DESCRIPTOR.full_name, "protobuf": uses_protobuf(handler)}

print(json.dumps({"mlflow": mlflow.__version__, "endpoints": endpoints, "messages": messages}, sort_keys=True))
