"""The cluster in a box on S3 (`make test-cluster`): the loop with moto_server as the store.

The services a namespace would have, with S3 as MinIO speaks it: moto_server, and an
``mlflow server`` whose artifacts are in ``s3://``. Every task runs in its image through
``kfp.local.DockerRunner`` as a random UID in group 0, configured as the ConfigMap and the
Secret would (``AWS_ENDPOINT_URL`` and the keys). An AutoKeras champion is trained,
registered, served by the serving-keras image as KServe serves it, and monitored; then a
register task is killed in its container and retried. The helpers are the gs:// loop's
(``test_cluster_in_a_box.py``); scripts/test_cluster.sh runs the two files side by side.
"""

# no `from __future__ import annotations`: kfp reads pipeline annotations as types
import json
import time
import uuid
from pathlib import Path

import pytest

from tests.cluster.conftest import Box
from tests.cluster.test_cluster_in_a_box import (
    AUTOKERAS,
    MODEL,
    RUN_AS,
    KServePredictor,
    _check_served_champion,
    _config,
    _docker,
    _init_docker_runner,
    _monitor,
    _newest_run,
    _note,
    _reach,
    _records,
    _train_first_champion,
)


@pytest.fixture
def s3_host_env(s3_box: Box):
    yield from _reach(s3_box)


def test_a_namespace_without_the_shared_settings_stops_at_the_first_task(
        s3_box, images, s3_host_env, tmp_path, capfd) -> None:
    """The ConfigMap's registry and artifact keys empty (KFP 2.2 needs every key to exist):
    autonomous-training's first task, in its container as a pod's, stops naming the keys to
    set, and no other task runs (nothing would outlive the pods). In this file, not the gs://
    loop's, so that the two pytest-xdist workers of scripts/test_cluster.sh get loops of
    about the same length (the gs:// loop is the longer one); what it checks does not
    depend on the store."""
    box = s3_box
    from kfp import local

    from autokfp.pipelines import PIPELINES

    config = _config(f"{box.bucket_uri}/lake-unconfigured", f"{box.bucket_uri}/labels",
                     payload_log="kserve")
    pipeline_root = tmp_path / "pipeline_root"
    pipeline_root.mkdir()
    pipeline_root.chmod(0o2775)
    unconfigured = {**box.pod_env, "MLFLOW_TRACKING_URI": "", "AUTOKFP_ARTIFACT_ROOT": "",
                    "AUTOKFP_MLFLOW_ARTIFACT_ROOT": ""}
    local.init(runner=local.DockerRunner(network_mode="host", environment=unconfigured,
                                         user=RUN_AS),
               pipeline_root=str(pipeline_root), raise_on_error=True)
    capfd.readouterr()
    with pytest.raises(RuntimeError, match="resolve-config"):
        PIPELINES["autonomous-training"]()(config=config)
    captured = capfd.readouterr()
    text = captured.out + captured.err
    print(text[-3000:])
    assert "ConfigMap autokfp-config" in text
    assert "MLFLOW_TRACKING_URI is not set" in text and "AUTOKFP_ARTIFACT_ROOT is not set" in text
    # no task after it ran (a task's folder appears with its first output)
    tasks = {task.name for run in pipeline_root.iterdir() for task in run.iterdir()}
    assert tasks <= {"resolve-config"}, tasks


def test_train_serve_and_monitor_against_s3_in_containers(s3_box, images, s3_host_env,
                                                          tmp_path) -> None:
    """The same services on S3 as MinIO speaks it (moto_server): the data source, the
    artifact store, MLflow's artifact root, KServe's storageUri and the prediction log are
    all s3://, reached at the ConfigMap's AWS_ENDPOINT_URL with the Secret's keys.

    Shorter than the gs:// loop (whose retraining branch is store-independent), and with
    the other engine: an AutoKeras network trained in the training image, registered in the
    mlflow server, served by the serving-keras image (the one its InferenceService names),
    answering as the network does offline; then a monitoring run that reads the served log
    and the labels back from S3 and, on traffic like the training data, keeps the champion.
    Here the predictor writes its own log (deploy.payload_log: predictor, with the S3 keys
    its InferenceService then gets)."""
    from autokfp import storage
    from autokfp.examples.churn import generate_churn

    box = s3_box
    data_uri, labels_uri = f"{box.bucket_uri}/lake", f"{box.bucket_uri}/labels"
    storage.write_bytes(f"{data_uri}/customers.parquet",
                        generate_churn(1500, seed=3).to_parquet(index=False))
    config = _config(data_uri, labels_uri, payload_log="predictor", engines=AUTOKERAS,
                     max_runtime_secs=120)
    pipeline_root = tmp_path / "pipeline_root"
    _init_docker_runner(box, pipeline_root)

    manifest = _train_first_champion(box, config, pipeline_root)
    model = manifest["spec"]["predictor"]["model"]
    # the champion is the network, and its InferenceService names the image with TensorFlow
    from mlflow import MlflowClient

    champion = MlflowClient(box.mlflow_uri).get_model_version_by_alias(MODEL, "champion")
    assert champion.tags.get("engine") == "autokeras", champion.tags
    assert model.get("image") == images["serving-keras"], model

    # served as KServe serves it, the model fetched from s3:// with KServe's own code
    period = generate_churn(1500, seed=4)
    period["customer_id"] = "S" + period["customer_id"].astype(str)
    requests = period.drop(columns=["churned"]).reset_index(drop=True)
    predictor = KServePredictor(box, images["serving"], manifest, tmp_path / "models")
    assert predictor.image == images["serving-keras"]
    predictor.fetch_model()
    predictor.start()
    try:
        _check_served_champion(predictor, requests.head(25), atol=1e-6)
        for begin in range(0, len(requests), 100):
            predictor.v1(_records(requests.iloc[begin:begin + 100]))
    finally:
        served_log = predictor.stop()
    logged = [u for u in storage.list_uris(f"{box.config_env['AUTOKFP_ARTIFACT_ROOT']}/predictions",
                                           recursive=True) if u.endswith(".parquet")]
    assert logged and all(u.startswith(f"{box.bucket_uri}/") for u in logged), (
        f"the predictor logged no predictions to S3:\n{served_log[-3000:]}")

    storage.write_bytes(f"{labels_uri}/period.parquet",
                        period[["customer_id", "churned"]].to_parquet(index=False))
    monitored = _monitor(pipeline_root, config)
    decision = monitored["decision"]
    assert decision["rows"] >= len(requests), decision
    assert decision["reference"] in ("stored", "training-data"), decision
    performance = next(c for c in decision["checks"] if c["trigger"] == "performance")
    assert performance["evaluated"], performance
    assert decision["retrain"] is False, decision["summary"]

    # 5. a register task killed in its container (docker kill: SIGKILL) leaves the registry
    # and the object store as they were, and its retry recovers
    _kill_a_register_task_and_retry(box, images["runtime"], config, pipeline_root, tmp_path)


# ------------------------------------------------------- a task killed in its container

PAUSED_STEP = Path(__file__).resolve().parent / "paused_step.py"
# where the register task is killed: just before its 3rd file upload to S3 (the model folder
# half uploaded, no version yet), and between its two alias moves (the version registered,
# marked incomplete, ``previous`` moved, ``champion`` not yet)
KILL_POINTS = {
    "mid-upload": ["mlflow.store.artifact.s3_artifact_repo:S3ArtifactRepository._upload_file", 3],
    "mid-register": ["mlflow.tracking.client:MlflowClient.set_registered_model_alias", 2],
}


def _registry_state(client, name: str) -> tuple[dict[str, str], dict[str, dict]]:
    """The model's aliases, and each version's run, source, tags."""
    aliases = {a: str(v) for a, v in (client.get_registered_model(name).aliases or {}).items()}
    versions = {str(v.version): {"run_id": v.run_id, "source": v.source, "tags": dict(v.tags)}
                for v in client.search_model_versions(f"name = '{name}'")}
    return aliases, versions


def _store_state(box: Box) -> dict[str, str]:
    """Every object in the bucket, with its ETag (its content's MD5)."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=box.config_env["AWS_ENDPOINT_URL"],
                      region_name="us-east-1", aws_access_key_id=box.secret_env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=box.secret_env["AWS_SECRET_ACCESS_KEY"])
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="autokfp-box"):
        objects.update({o["Key"]: o["ETag"] for o in page.get("Contents", [])})
    return objects


def _register_in_container(box: Box, image: str, work: Path, spec: dict, name: str,
                           pause: list | None) -> tuple[int, str]:
    """The register step in a container of the runtime image, as its task runs it; killed
    with ``docker kill`` once it is held at ``pause``. Its exit code and log."""
    (work / f"{name}.json").write_text(json.dumps({**spec, "pause": pause}))
    container = f"autokfp-box-register-{name}-{uuid.uuid4().hex[:6]}"
    env = [arg for key, value in box.pod_env.items() for arg in ("-e", f"{key}={value}")]
    _docker("run", "-d", "--name", container, "--network", "host", "--user", RUN_AS, *env,
            "-v", f"{work}:/work", "-v", f"{PAUSED_STEP}:/hook/paused_step.py:ro",
            "--entrypoint", "python", image, "/hook/paused_step.py", f"/work/{name}.json")
    try:
        if pause is not None:
            deadline = time.monotonic() + 300
            while "PAUSED" not in (logs := _docker("logs", container, check=False).stdout):
                state = _docker("inspect", "--format", "{{.State.Running}}", container).stdout
                assert state.strip() == "true" and time.monotonic() < deadline, (
                    f"the register task ended or hung before {pause}:\n{logs[-3000:]}"
                    f"{_docker('logs', container, check=False).stderr[-3000:]}")
                time.sleep(0.5)
            _docker("kill", container)  # SIGKILL, as the kubelet's or the OOM killer's
        code = int(_docker("wait", container, timeout=600).stdout.strip())
        done = _docker("logs", container, check=False)
        return code, done.stdout + done.stderr
    finally:
        _docker("rm", "-f", container, check=False)


def _kill_a_register_task_and_retry(box: Box, image: str, config: dict, pipeline_root: Path,
                                    tmp_path: Path) -> None:
    """The register task of a challenger that beat the champion, killed in its container
    mid-upload and then mid-register against the mlflow server and the S3 store; after each
    kill every alias, every complete version and every object stored before is unchanged;
    then the retry registers it whole."""
    import shutil

    import mlflow
    from mlflow import MlflowClient

    from autokfp.governance import audit
    from autokfp.modeling import registry

    started = time.monotonic()
    client = MlflowClient(box.mlflow_uri)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    work = tmp_path / "killed-register"
    work.mkdir()
    work.chmod(0o777)  # the task's random UID writes its output here
    # the challenger: the champion's package with one file of its own (a new package hash)
    candidate = Path(mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL, champion),
        dst_path=str(work / "download")))
    shutil.move(str(candidate), work / "candidate")
    (work / "candidate" / "challenger.txt").write_text("a package of its own\n")
    digest = registry.package_hash(work / "candidate")
    files = sum(1 for p in (work / "candidate").rglob("*") if p.is_file())
    training_run = _newest_run(pipeline_root, "autonomous-training", set())
    schema = next(p for p in sorted(training_run.rglob("schema")) if p.is_file())
    shutil.copyfile(schema, work / "schema.json")
    (work / "evaluation.json").write_text(json.dumps({
        "metrics": {"auc": 0.9},
        "comparison": {"metric": "auc", "promote": True, "champion_version": champion,
                       "champion": 0.8, "reason": "beats the champion"}}))
    for path in work.rglob("*"):
        path.chmod(0o777 if path.is_dir() else 0o666)
    spec = {"config": config, "model_path": "/work/candidate",
            "evaluation_path": "/work/evaluation.json", "schema_path": "/work/schema.json",
            "registration_path": "/work/out/registration.json"}
    registered_before = len(audit.events_for(MODEL, kind="model.registered"))

    for where, pause in KILL_POINTS.items():
        aliases, versions = _registry_state(client, MODEL)
        objects = _store_state(box)
        code, log = _register_in_container(box, image, work, spec, where, pause)
        assert code == 137, f"{where}: the task was not killed (exit {code}):\n{log[-3000:]}"
        after_aliases, after_versions = _registry_state(client, MODEL)
        # the registry: every alias where it was (the one addition allowed: ``previous`` on
        # the champion it would replace), every complete version as it was, anything new
        # marked incomplete (the retry removes it)
        assert after_aliases["champion"] == champion, (where, after_aliases)
        assert {a: v for a, v in after_aliases.items() if a in aliases} == aliases, where
        assert set(after_aliases) - set(aliases) <= {"previous"}, (where, after_aliases)
        assert after_aliases.get("previous", champion) == champion or "previous" in aliases
        for version, info in after_versions.items():
            if version in versions:
                assert info == versions[version], (where, version)
            else:
                assert info["tags"].get(registry.STATE_TAG) == registry.REGISTERING, (where, info)
                assert version not in after_aliases.values(), (where, after_aliases)
        if where == "mid-upload":
            assert after_versions == versions, "a version was made before its model was uploaded"
        else:
            assert len(after_versions) == len(versions) + 1, (where, after_versions)
        # the store: every object stored before is there, unchanged; the new ones belong to
        # the killed task's run, which no complete version names
        after_objects = _store_state(box)
        assert {k: after_objects.get(k) for k in objects} == objects, where
        complete_runs = {info["run_id"] for info in after_versions.values()
                         if info["tags"].get(registry.STATE_TAG) != registry.REGISTERING}
        added = set(after_objects) - set(objects)
        assert added and not any(run in key for key in added for run in complete_runs), where
        if where == "mid-upload":  # killed with the model folder half uploaded
            uploaded = [k for k in added if "/artifacts/model/" in k]
            assert len(uploaded) == 2 < files, (uploaded, files)
        assert len(audit.events_for(MODEL, kind="model.registered")) == registered_before
        _note(f"register task killed {where}: registry and store as they were")

    # the retry, as KFP's set_retry runs it: the challenger registered whole and promoted
    code, log = _register_in_container(box, image, work, spec, "retry", None)
    assert code == 0, log[-3000:]
    new = client.get_model_version_by_alias(MODEL, "champion")
    assert new.tags[registry.PACKAGE_HASH_TAG] == digest, log[-3000:]
    assert new.tags[registry.STATE_TAG] == registry.COMPLETE
    assert str(client.get_model_version_by_alias(MODEL, "previous").version) == champion
    _, versions = _registry_state(client, MODEL)
    assert all(v["tags"].get(registry.STATE_TAG) != registry.REGISTERING
               for v in versions.values()), versions  # the half-registered one is gone
    fetched = work / "fetched"
    fetched.mkdir()
    assert registry.package_hash(mlflow.artifacts.download_artifacts(
        artifact_uri=client.get_model_version_download_uri(MODEL, str(new.version)),
        dst_path=str(fetched))) == digest, "the new champion's stored model is not whole"
    output = json.loads((work / "out" / "registration.json").read_text())
    assert output["version"] == str(new.version) and output["promoted"] is True, output
    registered = audit.events_for(MODEL, str(new.version), kind="model.registered")
    assert len(registered) == 1, registered
    verification = audit.verify_trail()
    assert verification.ok, verification.problems
    _note(f"two register tasks killed in their container, then retried: "
          f"{time.monotonic() - started:.0f} s")

