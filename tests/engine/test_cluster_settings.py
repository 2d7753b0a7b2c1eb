"""Inside a pod, a step without a shared registry or artifact store stops at once."""

from __future__ import annotations

import os

import pytest

from autokfp.errors import ConfigError
from autokfp.settings import (
    Settings,
    child_stall_secs,
    environ_set,
    require_shared_state,
    switched_off,
)
from tests.conftest import small_config

POD = {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}


@pytest.fixture
def pod(monkeypatch, tmp_path):
    for name in ("MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AUTOKFP_MLFLOW_ARTIFACT_ROOT",
                 "AUTOKFP_RUNNER_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOKFP_HOME", str(tmp_path / "pod-home"))
    for name, value in POD.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_the_first_step_stops_without_the_configmap(pod, tmp_path, churn_frame):
    from autokfp.steps.discover import discover

    data = tmp_path / "data"
    data.mkdir()
    churn_frame.head(200).to_parquet(data / "customers.parquet")
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as info:
        discover(small_config(data).to_dict(), str(out / "d.parquet"), str(out / "s.json"),
                 str(out / "c.json"))
    message = str(info.value)
    assert "autokfp-config" in message
    assert "MLFLOW_TRACKING_URI is not set" in message
    assert "AUTOKFP_ARTIFACT_ROOT is not set" in message
    assert not out.exists()  # nothing was written
    assert not (tmp_path / "pod-home" / "mlflow.db").exists()


@pytest.mark.parametrize(("env", "named"), [
    ({"MLFLOW_TRACKING_URI": "sqlite:////tmp/x.db", "AUTOKFP_ARTIFACT_ROOT": "gs://b/a"},
     "MLFLOW_TRACKING_URI is 'sqlite:////tmp/x.db'"),
    ({"MLFLOW_TRACKING_URI": "http://mlflow:5000"}, "AUTOKFP_ARTIFACT_ROOT is not set"),
    ({"MLFLOW_TRACKING_URI": "http://mlflow:5000", "AUTOKFP_ARTIFACT_ROOT": "s3://b/a",
      "AUTOKFP_MLFLOW_ARTIFACT_ROOT": "/home/pod/mlartifacts"}, "AUTOKFP_MLFLOW_ARTIFACT_ROOT"),
])
def test_each_missing_or_pod_local_key_is_named(pod, env, named):
    for name, value in env.items():
        pod.setenv(name, value)
    with pytest.raises(ConfigError, match="autokfp-config") as info:
        require_shared_state()
    assert named in str(info.value)


def test_shared_settings_pass_and_models_go_to_the_store(pod):
    pod.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    pod.setenv("AUTOKFP_ARTIFACT_ROOT", "s3://bucket/autokfp/")
    require_shared_state()
    assert Settings.from_env().mlflow_artifact_root == "s3://bucket/autokfp/mlflow"


def test_a_local_run_in_a_pod_keeps_its_local_state(pod):
    """kfp.local in a Kubeflow notebook pod: the runner marks its tasks, nothing is refused."""
    pod.setenv("AUTOKFP_RUNNER_PID", "4242")
    require_shared_state()


def test_outside_a_pod_local_defaults_still_work(monkeypatch, tmp_path):
    # a local run earlier in the session exports its home's settings to its tasks
    for name in ("KUBERNETES_SERVICE_HOST", "MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT",
                 "AUTOKFP_MLFLOW_ARTIFACT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOKFP_HOME", str(tmp_path))
    require_shared_state()
    settings = Settings.from_env()
    assert settings.mlflow_artifact_root == str(tmp_path.resolve() / "mlartifacts")


def test_a_server_registry_never_uses_the_pod_disk_for_artifacts(monkeypatch, tmp_path):
    """With a registry server and no object store (a laptop against a team server), MLflow's
    own artifact store is used, not $AUTOKFP_HOME/mlartifacts."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("AUTOKFP_ARTIFACT_ROOT", raising=False)
    monkeypatch.delenv("AUTOKFP_MLFLOW_ARTIFACT_ROOT", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    monkeypatch.setenv("AUTOKFP_HOME", str(tmp_path))
    assert Settings.from_env().mlflow_artifact_root is None


def test_deploy_defaults_to_the_runs_own_namespace(pod, tmp_path):
    """In a pod the InferenceService goes to the pod's namespace (the KFP run's), not to a
    namespace named in the code."""
    from autokfp import settings
    from autokfp.config import DeploySpec
    from autokfp.serving.inference_service import build_inference_service

    account = tmp_path / "namespace"
    account.write_text("team-ml\n")
    pod.setattr(settings, "SERVICE_ACCOUNT_NAMESPACE", account)
    manifest = build_inference_service("churn", "3", "s3://b/m", DeploySpec(), canary=False)
    assert manifest["metadata"]["namespace"] == "team-ml"
    explicit = build_inference_service("churn", "3", "s3://b/m", DeploySpec(namespace="prod"),
                                       canary=False)
    assert explicit["metadata"]["namespace"] == "prod"


def test_outside_a_pod_the_kubeconfig_context_names_the_namespace(monkeypatch, tmp_path):
    from autokfp.config import DeploySpec

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: dev, context: {cluster: c, user: u, namespace: team-dev}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert DeploySpec().target_namespace() == "team-dev"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert DeploySpec().target_namespace() == "default"


@pytest.mark.parametrize("dataset", [
    "gs://autokfp-nowhere/churn/customers.parquet",
    # a DataHub URN is looked up in the catalog first: still not before the check
    "urn:li:dataset:(urn:li:dataPlatform:gcs,autokfp-nowhere/churn/customers.parquet,PROD)",
])
def test_each_pipelines_first_task_stops_before_it_reads_anything(pod, dataset):
    """resolve-config is the first task of autonomous-training and of drift-monitoring: in
    a namespace without the ConfigMap it stops with the keys to set, not with an error about
    the data or the catalog it never reached."""
    from autokfp.components import resolve_config

    for form in ({}, {"window_days": 7.0, "check_data": False}):  # training's, monitoring's
        with pytest.raises(ConfigError) as info:
            resolve_config.python_func(dataset=dataset, target="churned", **form)
        message = str(info.value)
        assert "ConfigMap autokfp-config" in message, message
        assert "MLFLOW_TRACKING_URI is not set" in message
        assert "AUTOKFP_ARTIFACT_ROOT is not set" in message


def test_resolve_config_is_the_first_task_of_the_pipelines_that_run_in_a_namespace(tmp_path):
    import yaml

    from tests.conftest import compiled_all

    def first_tasks(dag: dict, components: dict) -> list[str]:
        """The tasks that start before any other: no dependency in their DAG, nor in any
        DAG that holds them (an exit handler's)."""
        found = []
        for task_name, task in dag.get("tasks", {}).items():
            if task.get("dependentTasks") or task.get("triggerPolicy", {}).get("strategy"):
                continue
            inner = components[task["componentRef"]["name"]].get("dag")
            found += first_tasks(inner, components) if inner else [task_name]
        return found

    written = compiled_all(tmp_path)  # compile_all, once per process and settings
    for name in ("autonomous-training", "drift-monitoring"):
        spec = next(yaml.safe_load_all(written[name].read_text(encoding="utf-8")))
        assert first_tasks(spec["root"]["dag"], spec["components"]) == ["resolve-config"], name


def test_a_switch_is_off_only_for_its_off_values_and_environ_set_restores(monkeypatch):
    assert [switched_off(v) for v in ("0", " OFF ", "false", "No")] == [True] * 4
    assert [switched_off(v) for v in (None, "", "1", "on", "/tmp/socket", "offline")] == [False] * 6
    name = "AUTOKFP_TEST_ENVIRON_SET"
    monkeypatch.delenv(name, raising=False)
    with environ_set(name, "a"):
        assert os.environ[name] == "a"
    assert name not in os.environ  # unset before: unset after
    monkeypatch.setenv(name, "before")
    with pytest.raises(RuntimeError), environ_set(name, "b"):
        assert os.environ[name] == "b"
        raise RuntimeError("left by an error")
    assert os.environ[name] == "before"


def test_the_child_stall_bound_is_a_positive_number_of_seconds(monkeypatch):
    """AUTOKFP_CHILD_STALL_SECS bounds how long a forked child (DataHub's source, the Lite
    writer, a forked predictor) may go without progress: unset, the documented default; a
    value that is not a positive number is refused with a message naming the variable."""
    from autokfp import lifeline

    monkeypatch.delenv(lifeline.STALL_ENV, raising=False)
    assert child_stall_secs() == lifeline.DEFAULT_STALL_SECS == 120
    monkeypatch.setenv(lifeline.STALL_ENV, " 2.5 ")
    assert child_stall_secs() == 2.5
    for bad in ("0", "-3", "two minutes", "nan", "inf"):
        monkeypatch.setenv(lifeline.STALL_ENV, bad)
        with pytest.raises(ConfigError, match=f"{lifeline.STALL_ENV}=.*positive number"):
            child_stall_secs()
