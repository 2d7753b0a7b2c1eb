"""The compiled pipeline YAML: strictly valid, GPU only where it trains, no secret values.

Resource, GPU and Kubernetes settings are ignored by kfp.local, so the compiled spec is
the only place they can be checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp import compiler, components
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from autokfp import components as autokfp_components
from autokfp.edge.compilation import validate_pipeline_yaml
from autokfp.pipelines import ClusterOptions, build_autonomous_training
from autokfp.settings import image
from tests.conftest import compiled_all, small_config

AUTOKFP_BIN = Path(sys.executable).with_name("autokfp")
TRAINING_EXECUTORS = ("exec-train-model",)
# the training fan-out (a dsl.ParallelFor over the configured engines, named by kfp) sits
# between engineer-features and select-model
LOOP = "for-loop-1"
CHAIN = ["resolve-config", "discover", "profile", "engineer-features", "check-data-bias", LOOP,
         "select-model", "bias-check", "evaluate-model", "refit-model", "register-model",
         "write-model-card",
         "deploy-model"]
TASKS = [*CHAIN, "list-engines", "load-training-data", "explain-model"]
EXECUTORS = [t for t in TASKS if t != LOOP] + ["train-model"]
# AUTOKFP_IMAGE_REGISTRY is left alone: images were fixed when components were imported.
CLUSTER_ENV = ("AUTOKFP_GPU_NODE_SELECTOR", "AUTOKFP_GPU_COUNT", "AUTOKFP_GPU_TOLERATION",
               "AUTOKFP_CONFIG_MAP", "AUTOKFP_SECRET", "AUTOKFP_GCP_SECRET", "AUTOKFP_OPTIONAL_ENV")


@pytest.fixture(autouse=True)
def _default_cluster_env(monkeypatch):
    for name in CLUSTER_ENV:
        monkeypatch.delenv(name, raising=False)


def _documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def _compile(tmp_path: Path, options: ClusterOptions | None = None, name: str = "p.yaml",
             **parameters) -> Path:
    target = tmp_path / name
    compiler.Compiler().compile(build_autonomous_training(options), str(target),
                                pipeline_parameters=parameters or None)
    return target


def _containers(doc: dict) -> dict[str, dict]:
    return {name: executor["container"]
            for name, executor in doc["deploymentSpec"]["executors"].items()}


def _k8s(docs: list[dict]) -> dict[str, dict]:
    return docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """``compile_all`` once, with the default cluster settings (``compiled_all``: once per
    process)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in CLUSTER_ENV:
            patch.delenv(name, raising=False)
        written = compiled_all(tmp_path_factory.mktemp("compiled"))
    return written["autonomous-training"]


def test_every_task_of_the_training_pipeline_has_a_progress_label(compiled):
    """`autokfp run` prints each task by its label (edge.local.STEP_LABELS); a task without
    one printed its raw name (session 12's load-training-data, caught only by the slow README
    snippet test)."""
    from autokfp.edge.local import STEP_LABELS

    executors = _documents(compiled)[0]["deploymentSpec"]["executors"]
    tasks = {name.removeprefix("exec-") for name in executors}
    assert tasks == set(EXECUTORS)
    assert tasks - set(STEP_LABELS) == set()


# ---------------------------------------------------------------------------- validity


def test_compile_all_writes_a_valid_pipeline(compiled) -> None:
    assert compiled.name == "autonomous-training.yaml"
    from autokfp.pipelines import PIPELINES

    # one YAML per pipeline, and no temporary file left behind
    assert sorted(p.name for p in compiled.parent.iterdir()) == sorted(f"{n}.yaml" for n in PIPELINES)
    for path in compiled.parent.iterdir():
        validate_pipeline_yaml(path)
    spec = validate_pipeline_yaml(compiled)
    assert spec["pipelineInfo"]["name"] == "autonomous-training"


def test_spec_parses_strictly_into_the_kfp_protos(compiled) -> None:
    docs = _documents(compiled)
    assert len(docs) == 2
    spec = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(docs[0], spec, ignore_unknown_fields=False)
    assert set(spec.deployment_spec["executors"].keys()) == {f"exec-{t}" for t in EXECUTORS}
    executors = _k8s(docs)
    assert set(executors) == {f"exec-{t}" for t in EXECUTORS}
    for executor in executors.values():
        json_format.ParseDict(executor, kubernetes_executor_config_pb2.KubernetesExecutorConfig(),
                              ignore_unknown_fields=False)
    assert components.load_component_from_file(str(compiled)).name == "autonomous-training"


def test_validation_rejects_an_unknown_field(compiled, tmp_path) -> None:
    from autokfp.edge.compilation import CompilationError

    docs = _documents(compiled)
    docs[0]["root"]["dag"]["tasks"]["discover"]["retryPolicyy"] = {}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(CompilationError, match="broken.yaml"):
        validate_pipeline_yaml(broken)


# -------------------------------------------------------------------- images and GPUs


def test_only_training_requests_a_gpu_and_schedules_on_gpu_nodes(compiled) -> None:
    docs = _documents(compiled)
    for name, container in _containers(docs[0]).items():
        accelerator = container.get("resources", {}).get("accelerator")
        if name in TRAINING_EXECUTORS:
            assert accelerator["resourceType"] == "nvidia.com/gpu"
            assert accelerator["resourceCount"] == "1"
        else:
            assert accelerator is None, name
    for name, config in _k8s(docs).items():
        if name in TRAINING_EXECUTORS:
            assert config["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
            assert config["tolerations"] == [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert "nodeSelector" not in config and "tolerations" not in config, name


def test_images_are_ours_and_nothing_pip_installs_at_run_time(compiled) -> None:
    containers = _containers(_documents(compiled)[0])
    for name, container in containers.items():
        expected = image("training" if name in TRAINING_EXECUTORS else "runtime")
        assert container["image"] == expected, name
        command = " ".join(container["command"])
        assert "pip install" not in command and "pip3 install" not in command, name
        assert "kfp.dsl.executor_main" in command
    assert "pip install" not in compiled.read_text()


def test_image_registry_option_retags_every_image(tmp_path) -> None:
    # Images are fixed when components are imported, so this needs a fresh interpreter.
    env = {k: v for k, v in os.environ.items()
           if k not in CLUSTER_ENV and k != "AUTOKFP_IMAGE_REGISTRY"}
    result = subprocess.run(
        [str(AUTOKFP_BIN), "compile", "--out", str(tmp_path),
         "--image-registry", "registry.example.com/ml"],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    containers = _containers(_documents(tmp_path / "autonomous-training.yaml")[0])
    for name, container in containers.items():
        kind = "training" if name in TRAINING_EXECUTORS else "runtime"
        assert container["image"] == image(kind, registry="registry.example.com/ml"), name


def test_cluster_env_options_change_the_compiled_spec(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOKFP_GPU_NODE_SELECTOR", "cloud.google.com/gke-accelerator=nvidia-l4")
    monkeypatch.setenv("AUTOKFP_GPU_TOLERATION", "none")
    monkeypatch.setenv("AUTOKFP_GPU_COUNT", "2")
    docs = _documents(_compile(tmp_path, ClusterOptions.from_env()))
    for executor in TRAINING_EXECUTORS:
        accelerator = _containers(docs[0])[executor]["resources"]["accelerator"]
        assert accelerator["resourceCount"] == "2"
        training = _k8s(docs)[executor]
        assert training["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert "tolerations" not in training


def test_custom_toleration_and_names_from_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOKFP_GPU_TOLERATION", "gpu-pool:NoExecute")
    monkeypatch.setenv("AUTOKFP_CONFIG_MAP", "team-config")
    monkeypatch.setenv("AUTOKFP_SECRET", "team-credentials")
    executors = _k8s(_documents(_compile(tmp_path, ClusterOptions.from_env())))
    for executor in TRAINING_EXECUTORS:
        assert executors[executor]["tolerations"] == [
            {"key": "gpu-pool", "operator": "Exists", "effect": "NoExecute"}]
    for config in executors.values():
        assert config["configMapAsEnv"][0]["configMapName"] == "team-config"
        assert config["secretAsEnv"][0]["secretName"] == "team-credentials"


# ----------------------------------------------------------------- config and secrets


def test_config_map_and_secret_are_referenced_by_name(compiled) -> None:
    for name, config in _k8s(_documents(compiled)).items():
        (config_map,) = config["configMapAsEnv"]
        assert config_map["configMapName"] == "autokfp-config", name
        # KFP 2.2 (Kubeflow 1.9) rejects these fields: not written by default
        assert "optional" not in config_map and "configMapNameParameter" not in config_map
        assert {e["envVar"] for e in config_map["keyToEnv"]} >= {
            "MLFLOW_TRACKING_URI", "AUTOKFP_ARTIFACT_ROOT", "AWS_ENDPOINT_URL"}
        (secret,) = config["secretAsEnv"]
        assert secret["secretName"] == "autokfp-credentials", name
        assert "optional" not in secret and "secretNameParameter" not in secret
        assert {e["secretKey"] for e in secret["keyToEnv"]} >= {
            "MLFLOW_TRACKING_PASSWORD", "DATAHUB_GMS_TOKEN", "AWS_SECRET_ACCESS_KEY"}


def test_optional_env_is_a_compile_switch(tmp_path, monkeypatch) -> None:
    from autokfp.edge.compilation import compile_pipeline_file

    monkeypatch.setenv("AUTOKFP_OPTIONAL_ENV", "true")
    target = tmp_path / "p.yaml"
    compile_pipeline_file(build_autonomous_training(ClusterOptions.from_env()), target)
    for config in _k8s(_documents(target)).values():
        assert config["configMapAsEnv"][0]["optional"] is True
        assert config["secretAsEnv"][0]["optional"] is True


def test_gcp_key_secret_is_mounted_as_a_file(tmp_path, monkeypatch) -> None:
    """GCS credentials reach a task only as a mounted key file (or Workload Identity)."""
    monkeypatch.setenv("AUTOKFP_GCP_SECRET", "autokfp-gcp-key")
    docs = _documents(_compile(tmp_path, ClusterOptions.from_env()))
    for name, config in _k8s(docs).items():
        (volume,) = config["secretAsVolume"]
        assert volume["secretName"] == "autokfp-gcp-key" and volume["mountPath"] == "/var/secrets/gcp"
        env = {e["name"]: e["value"] for e in _containers(docs[0])[name].get("env", [])}
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/gcp/key.json", name


def test_compiled_files_are_readable_by_everyone(compiled) -> None:
    for path in compiled.parent.glob("*.yaml"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_no_secret_value_enters_the_yaml(tmp_path, monkeypatch) -> None:
    secrets = {"MLFLOW_TRACKING_PASSWORD": "s3cr3t-value-123", "DATAHUB_GMS_TOKEN": "tok-987",
               "MLFLOW_TRACKING_TOKEN": "mlflow-tok-321", "DB_PASSWORD": "pw-555"}
    for key, value in secrets.items():
        monkeypatch.setenv(key, value)
    config = small_config(tmp_path, sources=[
        {"name": "files", "kind": "folder", "path": str(tmp_path)},
        {"name": "warehouse", "kind": "sql", "url": "postgresql://u:${DB_PASSWORD}@h/db"},
    ]).to_dict()
    path = _compile(tmp_path, ClusterOptions.from_env(), config=config)
    validate_pipeline_yaml(path)
    text = path.read_text()
    # the config really is the default: its ${VAR} reference is there, its value is not
    assert "postgresql://u:${DB_PASSWORD}@h/db" in text
    for value in secrets.values():
        assert value not in text


# --------------------------------------------------------------------------------- DAG


def test_tasks_run_in_pipeline_order(compiled) -> None:
    tasks = _documents(compiled)[0]["root"]["dag"]["tasks"]
    assert set(tasks) == set(TASKS)
    assert "dependentTasks" not in tasks["resolve-config"]
    for before, after in zip(CHAIN[:-1], CHAIN[1:], strict=True):
        assert before in tasks[after]["dependentTasks"], f"{after} must wait for {before}"

    def producer(task: str, artifact: str) -> str:
        return tasks[task]["inputs"]["artifacts"][artifact]["taskOutputArtifact"]["producerTask"]

    assert producer("profile", "dataset") == "discover"
    assert producer("engineer-features", "dataset") == "discover"
    # the training tasks read the train rows and plan through their content-addressed copy
    # (test_training_cache_key.py: why)
    assert producer(LOOP, "pipelinechannel--load-training-data-train") == "load-training-data"
    assert tasks["load-training-data"]["inputs"]["parameters"]["training_data"][
        "taskOutputParameter"]["producerTask"] == "engineer-features"
    assert producer("select-model", "candidates") == LOOP
    assert producer("select-model", "test") == "engineer-features"
    # fairness is checked on the selected model; everything after sees the checked package
    assert producer("bias-check", "model") == "select-model"
    assert producer("evaluate-model", "model") == "bias-check"
    # what is explained is what serves: the refit (or the gated package it passes through)
    assert producer("explain-model", "model") == "refit-model"
    # after the gate, the refit on every labelled row is what is registered and documented
    assert producer("refit-model", "model") == "bias-check"
    assert producer("refit-model", "evaluation") == "evaluate-model"
    assert producer("refit-model", "test") == "engineer-features"
    assert producer("register-model", "model") == "refit-model"
    assert producer("write-model-card", "model") == "refit-model"
    assert producer("register-model", "evaluation") == "evaluate-model"
    assert "explain-model" in tasks["register-model"]["dependentTasks"]
    assert producer("write-model-card", "fairness") == "bias-check"
    assert producer("deploy-model", "registration") == "register-model"
    training = _loop(_documents(compiled)[0])["dag"]["tasks"]["train-model"]
    assert training["retryPolicy"]["maxRetryCount"] == 1


def _loop(doc: dict) -> dict:
    return doc["components"][doc["root"]["dag"]["tasks"][LOOP]["componentRef"]["name"]]


def test_one_training_task_fans_out_over_the_configured_engines_each_on_a_gpu(compiled) -> None:
    docs = _documents(compiled)
    tasks = docs[0]["root"]["dag"]["tasks"]
    loop = tasks[LOOP]
    # one iteration per engine that list-engines reads from the config; no parallelism
    # limit: in the cluster every engine trains at once, each on its own GPU node
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--list-engines-Output"
    assert "iteratorPolicy" not in loop
    assert sorted(loop["dependentTasks"]) == ["check-data-bias", "list-engines", "load-training-data"]
    train = _loop(docs[0])["dag"]["tasks"]["train-model"]
    assert train["inputs"]["parameters"]["engine"]["componentInputParameter"] == \
        loop["parameterIterator"]["itemInput"]
    # selection takes the whole list of candidates
    candidates = docs[0]["components"]["comp-select-model"]["inputDefinitions"]["artifacts"]["candidates"]
    assert candidates["isArtifactList"] is True
    assert _loop(docs[0])["outputDefinitions"]["artifacts"]["pipelinechannel--train-model-model"][
        "isArtifactList"] is True
    containers, k8s = _containers(docs[0]), _k8s(docs)
    for executor in TRAINING_EXECUTORS:
        accelerator = containers[executor]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu"
        assert accelerator["resourceCount"] == "1"
        assert containers[executor]["resources"]["resourceCpuRequest"] == "4"
        assert containers[executor]["resources"]["resourceMemoryRequest"] == "16G"
        assert k8s[executor]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert k8s[executor]["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_a_local_build_trains_the_engines_one_after_the_other(tmp_path) -> None:
    docs = _documents(_compile(tmp_path, ClusterOptions(training_parallelism=1)))
    assert docs[0]["root"]["dag"]["tasks"][LOOP]["iteratorPolicy"] == {"parallelismLimit": 1}


# ------------------------------------------------------------------ every component alone


@pytest.mark.parametrize("component", autokfp_components.ALL_COMPONENTS,
                         ids=lambda c: c.name)
def test_each_component_compiles_on_its_own(component, tmp_path) -> None:
    path = tmp_path / f"{component.name}.yaml"
    compiler.Compiler().compile(component, str(path))
    validate_pipeline_yaml(path)
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == component.name
    assert loaded.component_spec.inputs.keys() == component.component_spec.inputs.keys()


def test_registration_is_tagged_with_the_kfp_run_and_pipeline(compiled) -> None:
    spec = _documents(compiled)[0]
    parameters = spec["root"]["dag"]["tasks"]["register-model"]["inputs"]["parameters"]
    assert parameters["kfp_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    assert parameters["pipeline_name"]["runtimeValue"]["constant"] == "autonomous-training"


# ------------------------------------------------------------------------- the run form

RUN_FORM = {  # parameter -> (IR type, default, words its description must hold)
    "dataset": ("STRING", "from config", ["gs://", "<source>/<table", "urn:li:dataset"]),
    "target": ("STRING", "from config", ["column to predict"]),
    "task": ("STRING", "from config", ["binary", "multiclass", "regression"]),
    "model_name": ("STRING", "from config", ["registered model"]),
    "budget_seconds": ("NUMBER_INTEGER", -1, ["seconds", "-1"]),
    "engines": ("STRING", "from config", ["h2o,autokeras"]),
    "require_approval": ("BOOLEAN", False, ["autokfp approve"]),
    "config": ("STRUCT", {}, ["full run configuration", "override"]),
}


def test_the_run_form_has_typed_described_parameters(compiled) -> None:
    parameters = _documents(compiled)[0]["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(RUN_FORM)
    for name, (kind, default, words) in RUN_FORM.items():
        parameter = parameters[name]
        assert parameter["parameterType"] == kind, name
        assert parameter["defaultValue"] == default, name
        assert parameter["isOptional"] is True, name
        for word in words:
            assert word in parameter["description"], (name, word)
    # no empty-string default: the KFP UI calls it "Missing parameter" (kubeflow/pipelines#11515)
    assert all(p["defaultValue"] != "" for p in parameters.values())


def test_the_run_form_is_checked_first_and_training_reads_only_its_settings(compiled) -> None:
    doc = _documents(compiled)[0]
    tasks = doc["root"]["dag"]["tasks"]
    resolve = tasks["resolve-config"]["inputs"]["parameters"]
    assert {name: value["componentInputParameter"] for name, value in resolve.items()} == {
        name: name for name in RUN_FORM}
    # every other task reads the resolved config, never the raw form
    for name, task in tasks.items():
        if name == "resolve-config":
            continue
        for value in task.get("inputs", {}).get("parameters", {}).values():
            assert "componentInputParameter" not in value, name
        if name == "load-training-data":
            # no config at all: its only input is the content-addressed URI of the training
            # data, so its cache key (and the GPU tasks' after it) does not move with settings
            assert set(task["inputs"]["parameters"]) == {"training_data"}
        elif name != LOOP:
            config = task["inputs"]["parameters"]["config"]["taskOutputParameter"]
            assert config == {"outputParameterKey": "Output", "producerTask": "resolve-config"}
    # the GPU task's config is its list-engines item's settings alone (budget, that engine's
    # settings, primary metric, calibration: tests/components/training/test_list_engines.py),
    # so a change to anything else leaves its cache key as it was
    assert set(tasks[LOOP]["inputs"]["parameters"]) == {"pipelinechannel--list-engines-Output"}
    train = _loop(doc)["dag"]["tasks"]["train-model"]
    item = tasks[LOOP]["parameterIterator"]["itemInput"]
    assert train["inputs"]["parameters"]["config"] == {
        "componentInputParameter": item,
        "parameterExpressionSelector": 'parseJson(string_value)["settings"]'}
    assert train["inputs"]["parameters"]["engine"] == {
        "componentInputParameter": item,
        "parameterExpressionSelector": 'parseJson(string_value)["engine"]'}
    assert train["cachingOptions"]["enableCache"] is True


def test_every_pipelines_form_is_typed_and_described(compiled) -> None:
    """What the KFP UI's run form shows for each compiled pipeline: a type, a description and
    a default that is not "" (kubeflow/pipelines#11515) for every parameter."""
    for path in sorted(compiled.parent.glob("*.yaml")):
        parameters = _documents(path)[0]["root"]["inputDefinitions"]["parameters"]
        for name, parameter in parameters.items():
            assert parameter["parameterType"] != "PARAMETER_TYPE_ENUM_UNSPECIFIED", (path, name)
            assert len(parameter.get("description", "")) > 20, (path.name, name)
            assert parameter.get("defaultValue", "-") != "", (path.name, name)


def test_batch_scoring_compiles_with_a_described_form_and_retries(compiled) -> None:
    path = compiled.parent / "batch-scoring.yaml"
    spec = validate_pipeline_yaml(path)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    expected = {"dataset": ("STRING", "from config"), "model": ("STRING", "from config"),
                "output": ("STRING", "artifact store"), "keys": ("STRING", "from model"),
                "chunk_rows": ("NUMBER_INTEGER", 50000), "config": ("STRUCT", {})}
    assert {k: (v["parameterType"], v["defaultValue"]) for k, v in parameters.items()} == expected
    assert "NAME@ALIAS" in parameters["model"]["description"]
    assert "#<table>" in parameters["output"]["description"]
    assert "skips finished chunks" in parameters["chunk_rows"]["description"]
    (task,) = spec["root"]["dag"]["tasks"].values()
    assert task["retryPolicy"]["maxRetryCount"] == 2  # a retry resumes where it stopped
    assert "autokfp-runtime" in spec["deploymentSpec"]["executors"]["exec-score-batch"][
        "container"]["image"]


def test_pipeline_modules_build_their_pipeline_objects_when_read_not_at_import():
    """Importing the pipelines builds nothing (building at import took ~15 s of every
    ``autokfp run``); the module-level objects are still there for ``kfp dsl compile --py``
    and are the same graph the factories build."""
    code = ("import autokfp.pipelines as p, sys\n"
            "from kfp.cli.compile_ import collect_pipeline_or_component_from_module as find\n"
            "modules = [sys.modules['autokfp.pipelines.' + m] for m in ('training.autonomous_training',"
            " 'monitoring.drift_monitoring', 'discovery.discovery', 'scoring.batch_scoring')]\n"
            "print(sum(m.__name__.rsplit('.', 1)[1] in vars(m) for m in modules))\n"
            "print(' '.join(find(m).name for m in modules))\n"
            "print(modules[0].autonomous_training is modules[0].autonomous_training)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == [
        "0", "autonomous-training drift-monitoring discovery batch-scoring", "True"]
