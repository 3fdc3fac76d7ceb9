"""A data scientist's session with the real MLflow client, configured only by MLFLOW_* variables.

Reads {"prefix": str, "big_mb": int} on stdin; prints one JSON line with what it created and what
it read back, for the test to compare with what the MLflow server holds.
"""
import hashlib
import json
import os
import sys
import tempfile

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

spec = json.load(sys.stdin)
prefix = spec["prefix"]
big_mb = int(spec.get("big_mb", 0))
major = int(mlflow.__version__.split(".")[0])
client = MlflowClient()
out = {"mlflow": mlflow.__version__}


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


work = tempfile.mkdtemp()

# Experiments and runs
experiment_id = mlflow.create_experiment(f"{prefix}-experiment", tags={"team": "conformance"})
mlflow.set_experiment(experiment_id=experiment_id)
out["experiment_id"] = experiment_id

with mlflow.start_run(run_name="train") as run:
    run_id = run.info.run_id
    mlflow.log_param("alpha", "0.5")
    mlflow.log_params({"l1": "0.1", "layers": "3"})
    for step in range(20):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
    mlflow.set_tag("stage", "dev")
    mlflow.set_tags({"owner_team": "conformance", "temp": "x"})
    mlflow.delete_tag("temp")
    client.log_batch(
        run_id,
        metrics=[mlflow.entities.Metric("batch_metric", 3.0, 0, 1)],
        params=[mlflow.entities.Param("batch_param", "b")],
        tags=[mlflow.entities.RunTag("batch_tag", "t")],
    )

    # Artifacts: a small file, a directory, and a large file
    small = os.path.join(work, "notes.txt")
    with open(small, "w") as f:
        f.write("hello from the conformance suite\n")
    mlflow.log_artifact(small)
    folder = os.path.join(work, "plots")
    os.makedirs(folder)
    for name in ("a.csv", "b.csv"):
        with open(os.path.join(folder, name), "w") as f:
            f.write("x,y\n1,2\n")
    mlflow.log_artifacts(folder, artifact_path="plots")
    if big_mb:
        big = os.path.join(work, "big.bin")
        with open(big, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(big_mb):
                f.write(block)
        out["big_sha256"] = sha256(big)
        out["big_bytes"] = os.path.getsize(big)
        mlflow.log_artifact(big, artifact_path="large")
        os.remove(big)

    # A model, registered
    model_name = f"{prefix}-model"
    if major >= 3:
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name=model_name)
    else:
        info = mlflow.pyfunc.log_model(artifact_path="model", python_model=Echo(), registered_model_name=model_name)
    out["model_uri"] = info.model_uri

run = client.get_run(run_id)
out["run_id"] = run_id
out["run"] = {
    "params": dict(run.data.params),
    "metrics": dict(run.data.metrics),
    "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.") or k == "mlflow.user"},
    "status": run.info.status,
    "user_id": run.info.user_id,
}
out["loss_history"] = [m.value for m in client.get_metric_history(run_id, "loss")]

# Artifacts back
out["artifacts"] = sorted(a.path for a in client.list_artifacts(run_id))
out["plots"] = sorted(a.path for a in client.list_artifacts(run_id, "plots"))
down = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes.txt", dst_path=os.path.join(work, "down"))
with open(down) as f:
    out["notes"] = f.read()
if big_mb:
    down_big = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="large/big.bin", dst_path=os.path.join(work, "down-big"))
    out["big_download_sha256"] = sha256(down_big)
    os.remove(down_big)

# The model back, loaded and used
loaded = mlflow.pyfunc.load_model(f"models:/{model_name}/1")
out["prediction"] = [int(v) for v in loaded.predict([1, 2, 3])]

# More versions, aliases and tags
version1 = client.get_model_version(model_name, "1")
version2 = client.create_model_version(model_name, version1.source, run_id=run_id, description="second")
out["versions"] = [version1.version, version2.version]
client.set_registered_model_alias(model_name, "champion", version2.version)
out["alias_version"] = client.get_model_version_by_alias(model_name, "champion").version
client.set_registered_model_tag(model_name, "task", "echo")
client.set_model_version_tag(model_name, version2.version, "validated", "yes")
client.update_model_version(model_name, version2.version, description="second, validated")
client.update_registered_model(model_name, description="an echo model")
out["download_uri"] = client.get_model_version_download_uri(model_name, version2.version)
model = client.get_registered_model(model_name)
out["model"] = {"tags": dict(model.tags), "aliases": dict(model.aliases), "description": model.description}

# Searches
out["search_runs"] = [r.info.run_id for r in client.search_runs([experiment_id], "params.alpha = '0.5'")]
out["search_experiments"] = [e.experiment_id for e in client.search_experiments(filter_string=f"name = '{prefix}-experiment'")]
out["search_models"] = [m.name for m in client.search_registered_models(filter_string=f"name = '{model_name}'")]
out["search_versions"] = sorted(v.version for v in client.search_model_versions(f"name = '{model_name}'"))

# Delete and restore
client.delete_run(run_id)
out["deleted_run_state"] = client.get_run(run_id).info.lifecycle_stage
client.restore_run(run_id)
out["restored_run_state"] = client.get_run(run_id).info.lifecycle_stage
client.delete_experiment(experiment_id)
out["deleted_experiment_state"] = client.get_experiment(experiment_id).lifecycle_stage
client.restore_experiment(experiment_id)
out["restored_experiment_state"] = client.get_experiment(experiment_id).lifecycle_stage
client.delete_registered_model_alias(model_name, "champion")
client.delete_model_version(model_name, version2.version)
try:
    client.get_model_version(model_name, version2.version)
    out["deleted_version_error"] = None
except MlflowException as err:
    out["deleted_version_error"] = err.error_code

out["model_name"] = model_name
print(json.dumps(out))
