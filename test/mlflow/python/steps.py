"""Calls of the real MLflow client, one after another, each answer or refusal reported.

Reads {"steps": [{"call": "client.get_run" | "mlflow.search_runs" | ..., "args": [...],
"kwargs": {...}, "save": "name"}]} on stdin. An argument string "$name" (or "$name.attr.attr")
is a saved result. Prints one JSON line: [{"ok": value} | {"error_code": str, "message": str}, ...].
"""
import json
import sys

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

client = MlflowClient()
saved = {}


def plain(value):
    """An MLflow entity, list or page as JSON-able data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [plain(v) for v in value]
        token = getattr(value, "token", None)
        return {"items": items, "token": token} if token else items
    if hasattr(value, "to_proto"):
        from google.protobuf.json_format import MessageToDict
        return MessageToDict(value.to_proto(), preserving_proto_field_name=True)
    if hasattr(value, "to_dictionary"):
        return plain(value.to_dictionary())
    if hasattr(value, "__dict__"):
        return {k.lstrip("_"): plain(v) for k, v in vars(value).items()}
    return str(value)


def resolve(value):
    if isinstance(value, str) and value.startswith("$"):
        name, *attrs = value[1:].split(".")
        found = saved[name]
        for attr in attrs:
            found = found[attr] if isinstance(found, dict) else getattr(found, attr)
        return found
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


results = []
for step in json.load(sys.stdin)["steps"]:
    owner, name = step["call"].split(".", 1)
    target = getattr({"client": client, "mlflow": mlflow}[owner], name)
    try:
        value = target(*resolve(step.get("args", [])), **resolve(step.get("kwargs", {})))
        if "save" in step:
            saved[step["save"]] = value
        results.append({"ok": plain(value)})
    except MlflowException as err:
        results.append({"error_code": err.error_code, "message": str(err)})
print(json.dumps(results))
