"""A real MLflow server over HTTP, its artifacts in an object store (GCS emulator, moto S3):
a model registered by one process is fetched whole by another process that shares no disk
with it, through the registry and through the storageUri KServe would be given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import mlflow_server

REGISTER = textwrap.dedent("""
    import json, os, sys
    import numpy as np, pandas as pd
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression
    from autokfp.modeling import registry

    names, folder = json.loads(sys.argv[1]), sys.argv[2]
    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    y = (x["a"] + x["b"] > 0).astype(int)
    mlflow.sklearn.save_model(LogisticRegression().fit(x, y), folder + "/model")
    out = {}
    for name, mlflow_root in names.items():  # one model per artifact-root setting
        if mlflow_root:
            os.environ["AUTOKFP_MLFLOW_ARTIFACT_ROOT"] = mlflow_root
        else:
            os.environ.pop("AUTOKFP_MLFLOW_ARTIFACT_ROOT", None)
        registered = registry.register_model(folder + "/model", name, {"test_auc": 0.9}, {}, {},
                                             promote=True, decision="first",
                                             compared_champion=None)
        out[name] = {"version": registered.version, "source": registered.source}
    print(json.dumps({"models": out, "probe": x.head(5).to_dict(orient="list")}))
""")

# What another pod does: the registry's download, and KServe's storage initializer (which
# lists the storageUri prefix and fetches every object with the store's own client).
FETCH = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import mlflow.artifacts, mlflow.pyfunc, pandas as pd
    from autokfp.modeling import registry


    def initialize_storage(uri, mnt):
        bucket, _, prefix = uri.split("://", 1)[1].partition("/")
        prefix = prefix.rstrip("/") + "/"
        if uri.startswith("gs://"):
            from google.cloud import storage
            gcs = storage.Client(project="autokfp-test")
            objects = [(b.name, b.download_to_filename) for b in gcs.list_blobs(bucket, prefix=prefix)]
        else:
            import boto3
            s3 = boto3.resource("s3").Bucket(bucket)
            objects = [(o.key, lambda path, key=o.key: s3.download_file(key, path))
                       for o in s3.objects.filter(Prefix=prefix)]
        for key, download in objects:
            target = mnt / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            download(str(target))


    names, root, probe = json.loads(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    frame = pd.DataFrame(probe)
    client = registry.configure()
    results = {}
    for name, version in names.items():
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                    dst_path=str(root / name / "registry"))
        uri = registry.serving_uri(client, name, version)
        mnt = root / name / "mnt-models"
        if uri.startswith(("gs://", "s3://")):
            initialize_storage(uri, mnt)
        results[name] = {
            "storage_uri": uri,
            "registry_files": sorted(p.name for p in Path(local).iterdir()),
            "registry_pred": mlflow.pyfunc.load_model(local).predict(frame).tolist(),
            "served_pred": mlflow.pyfunc.load_model(str(mnt)).predict(frame).tolist()
                           if (mnt / "MLmodel").exists() else None,
        }
    print(json.dumps(results))
""")


def _run(script: str, args: list[str], env: dict[str, str], cwd: Path) -> dict:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _pod_env(home: Path, base: dict[str, str], **extra: str) -> dict[str, str]:
    """A fresh process environment: its own AUTOKFP_HOME, the ConfigMap's settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUTOKFP_", "MLFLOW_TRACKING", "AWS_", "STORAGE_EMULATOR"))}
    repo = str(Path(__file__).resolve().parents[2])
    env.update(base, AUTOKFP_HOME=str(home), PYTHONPATH=repo, **extra)
    return env


@pytest.fixture(params=["gcs", "s3"])
def object_store(request) -> tuple[str, dict[str, str]]:
    """(bucket URI, the environment that reaches it) for each object store."""
    if request.param == "gcs":
        emulator = request.getfixturevalue("gcs_emulator")
        return emulator.base_uri, {"STORAGE_EMULATOR_HOST": emulator.host,
                                   "GOOGLE_CLOUD_PROJECT": "autokfp-test"}
    server = request.getfixturevalue("s3_server")
    return server.base_uri, server.env


def test_models_registered_in_one_process_are_fetched_whole_by_another(tmp_path, object_store):
    """Two settings: artifacts written straight to <AUTOKFP_ARTIFACT_ROOT>/mlflow (the
    default with a registry server), and through the server's proxy (mlflow-artifacts:/),
    which KServe cannot read, so the deploy step's storageUri is a copy in the store."""
    bucket, store_env = object_store
    run = uuid.uuid4().hex[:8]
    direct, proxied = f"churn-direct-{run}", f"churn-proxied-{run}"
    with mlflow_server(tmp_path / "server", f"{bucket}/{run}/server", store_env) as url:
        config = {**store_env, "MLFLOW_TRACKING_URI": url,
                  "AUTOKFP_ARTIFACT_ROOT": f"{bucket}/{run}/artifacts"}
        trainer_home = tmp_path / "pod-a" / "home"
        registered = _run(REGISTER, [json.dumps({direct: None,
                                                 proxied: "mlflow-artifacts:/autokfp"}),
                                     str(tmp_path / "pod-a")],
                          _pod_env(trainer_home, config), tmp_path / "pod-a")
        # the trainer kept no model on its own disk beyond the package it was handed
        assert [p.parent for p in (tmp_path / "pod-a").rglob("MLmodel")] == [
            tmp_path / "pod-a" / "model"]
        versions = {name: info["version"] for name, info in registered["models"].items()}
        fetched = _run(FETCH, [json.dumps(versions), str(tmp_path / "pod-b"),
                               json.dumps(registered["probe"])],
                       _pod_env(tmp_path / "pod-b" / "home", config), tmp_path / "pod-b")

    assert fetched[direct]["storage_uri"].startswith(f"{bucket}/{run}/artifacts/mlflow/{direct}/")
    assert fetched[proxied]["storage_uri"] == f"{bucket}/{run}/artifacts/models/{proxied}/1"
    for name in (direct, proxied):
        result = fetched[name]
        assert "MLmodel" in result["registry_files"], name
        assert result["served_pred"] is not None, f"{name}: KServe would find no model"
        assert result["served_pred"] == result["registry_pred"]
        assert len(result["registry_pred"]) == 5


def test_a_copy_for_serving_cut_short_is_never_served_and_is_redone(autokfp_home, s3_server,
                                                                     tmp_path, monkeypatch):
    """A model outside the object store is copied for KServe with MLmodel written last: a
    copy killed part-way names no storageUri, and the next deploy completes it."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from autokfp import storage
    from autokfp.errors import StorageError
    from autokfp.modeling import registry
    from autokfp.settings import Settings

    monkeypatch.setenv("AUTOKFP_ARTIFACT_ROOT", f"{s3_server.base_uri}/{uuid.uuid4().hex}")
    x = pd.DataFrame(np.random.default_rng(1).normal(size=(30, 2)), columns=["a", "b"])
    mlflow.sklearn.save_model(LogisticRegression().fit(x, (x["a"] > 0).astype(int)),
                              str(tmp_path / "model"))
    registry.register_model(tmp_path / "model", "cut", {"test_auc": 0.7}, {}, {}, promote=True,
                            decision="first", compared_champion=None)
    settings = Settings.from_env()
    client = registry.configure(settings)
    target = storage.join(settings.artifact_root, "models", "cut", "1")

    def killed(uri, data):
        raise StorageError("the pod was killed")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "write_bytes", killed)
        with pytest.raises(StorageError):
            registry.serving_uri(client, "cut", "1", settings)
    assert storage.list_uris(target) and not storage.exists(storage.join(target, "MLmodel"))

    uri = registry.serving_uri(client, "cut", "1", settings)
    assert uri == target.replace("minio://", "s3://")
    names = {u.rsplit("/", 1)[-1] for u in storage.list_uris(target)}
    assert names >= {p.name for p in (tmp_path / "model").iterdir()}  # + MLflow's own meta file
    assert registry.serving_uri(client, "cut", "1", settings) == uri  # copied once
