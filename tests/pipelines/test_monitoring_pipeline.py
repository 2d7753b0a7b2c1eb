"""The drift-monitoring pipeline: its compiled graph, its exit handler, and the loop end to end.

The slow test runs the loop under kfp.local on the example churn data. Train on period A →
a monitoring run on an empty window (no retraining; the champion's reference is kept) →
period-B traffic whose distribution and churn behaviour shifted,
labels arriving, the training table refreshed → monitoring finds drift and a performance
drop, re-enters the training graph, the retrained model becomes champion and its canary
deploy is verified and promoted → period-C traffic like B, no labels → no retraining.
Every decision is in the audit trail, and the trail verifies.
"""

# no `from __future__ import annotations`: kfp reads the test component's annotations as types
import contextlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from kfp import compiler, dsl

from autokfp import storage
from autokfp.config import RunConfig, parse_config
from autokfp.edge.local import run_monitoring, run_training
from autokfp.examples.churn import generate_churn
from autokfp.governance.audit import read_events, verify_trail
from autokfp.modeling import registry
from autokfp.monitoring.window import reference_uri
from autokfp.settings import image
from tests.conftest import SMALL_BUDGET, SMALL_ENGINES, small_config

MODEL = "churn-mon"
MONITORING_TASKS = [
    "collect-predictions",
    "detect-drift",
    "measure-performance",
    "detect-anomalies",
    "decide-retraining",
]
TRAINING_TASKS = {
    "discover",
    "profile",
    "engineer-features",
    "list-engines",
    "train-model",
    "register-model",
    "deploy-model",
}


# ------------------------------------------------------------------------- compiled graph


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    from autokfp.edge.compilation import validate_pipeline_yaml
    from autokfp.pipelines import PIPELINES, ClusterOptions

    path = tmp_path_factory.mktemp("compiled") / "drift-monitoring.yaml"
    compiler.Compiler().compile(PIPELINES["drift-monitoring"](ClusterOptions()), str(path))
    validate_pipeline_yaml(path)  # strict PipelineSpec + Kubernetes platform spec
    documents = list(yaml.safe_load_all(path.read_text()))
    return {"spec": documents[0], "platform": documents[1]}


def _all_tasks(components: dict, name: str) -> set[str]:
    """Every task of a DAG component, including those of its own sub-DAGs (conditions)."""
    found = set()
    for task_name, task in components[name].get("dag", {}).get("tasks", {}).items():
        found.add(task_name)
        child = task["componentRef"]["name"]
        if "dag" in components[child]:
            found |= _all_tasks(components, child)
    return found


def test_the_nested_training_graph_runs_under_the_retrain_condition(compiled):
    spec = compiled["spec"]
    components = spec["components"]
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "finalize-monitoring"}
    body = components[root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert set(MONITORING_TASKS) <= set(body)
    (condition,) = [t for t in body.values() if "condition" in t.get("triggerPolicy", {})]
    assert condition["taskInfo"]["name"] == "retrain"
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--decide-retraining-Output'] == true"
    )
    assert condition["dependentTasks"] == ["decide-retraining", "resolve-config"]
    branch = components[condition["componentRef"]["name"]]["dag"]["tasks"]
    nested = branch["autonomous-training"]
    # the nested graph trains on the config the form resolved to
    assert nested["inputs"]["parameters"]["config"] == {
        "componentInputParameter": "pipelinechannel--resolve-config-Output"
    }
    assert nested["cachingOptions"].get("enableCache", False) is False
    assert TRAINING_TASKS <= _all_tasks(components, nested["componentRef"]["name"])  # nested
    assert branch["record-retraining"]["dependentTasks"] == ["autonomous-training"]
    producer = branch["record-retraining"]["inputs"]["artifacts"]["registration"][
        "taskOutputArtifact"
    ]
    assert producer["producerTask"] == "autonomous-training"


MONITORING_FORM = {  # parameter -> (IR type, default, words its description must hold)
    "model_name": ("STRING", "from config", ["registered model", "champion"]),
    "dataset": ("STRING", "from config", ["retraining", "gs://", "urn:li:dataset"]),
    "target": ("STRING", "from config", ["column"]),
    "labels": ("STRING", "from config", ["ground truth", "gs://"]),
    "window_days": ("NUMBER_DOUBLE", -1.0, ["days", "-1"]),
    "drift_share": ("NUMBER_DOUBLE", -1.0, ["share of the features", "-1"]),
    "performance_drop": ("NUMBER_DOUBLE", -1.0, ["primary metric", "-1"]),
    "budget_seconds": ("NUMBER_INTEGER", -1, ["retrains", "-1"]),
    "engines": ("STRING", "from config", ["h2o,autokeras"]),
    "window_end": ("STRING", "scheduled", ["scheduled time"]),
    "config": ("STRUCT", {}, ["full run configuration", "override"]),
}


def test_the_run_form_is_typed_and_checked_first(compiled):
    spec = compiled["spec"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == set(MONITORING_FORM)
    for name, (kind, default, words) in MONITORING_FORM.items():
        assert parameters[name]["parameterType"] == kind, name
        assert parameters[name]["defaultValue"] == default, name
        for word in words:
            assert word in parameters[name]["description"], (name, word)
    body = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    resolve = body["resolve-config"]
    assert "dependentTasks" not in resolve  # the first task inside the exit handler
    inputs = resolve["inputs"]["parameters"]
    assert inputs["check_data"]["runtimeValue"]["constant"] is False  # no table read per tick
    assert {k: v["componentInputParameter"] for k, v in inputs.items() if k != "check_data"} == {
        k: f"pipelinechannel--{k}" for k in MONITORING_FORM if k != "window_end"}
    for name in MONITORING_TASKS:  # every monitoring task reads the resolved config
        assert body[name]["inputs"]["parameters"]["config"] == {
            "taskOutputParameter": {"outputParameterKey": "Output",
                                    "producerTask": "resolve-config"}}
    # the exit task applies the same identity fields to the raw config
    exit_inputs = spec["root"]["dag"]["tasks"]["finalize-monitoring"]["inputs"]["parameters"]
    assert {k: exit_inputs[k]["componentInputParameter"]
            for k in ("config", "model_name", "dataset", "target")} == {
        k: k for k in ("config", "model_name", "dataset", "target")}


def test_monitoring_tasks_retry_with_backoff_and_the_exit_task_always_runs(compiled):
    spec = compiled["spec"]
    body = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    for name in MONITORING_TASKS:
        policy = body[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 2 and policy["backoffDuration"] == "30s"
        assert policy["backoffFactor"] == 2.0 and policy["backoffMaxDuration"] == "600s"
    exit_task = spec["root"]["dag"]["tasks"]["finalize-monitoring"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert exit_task["dependentTasks"] == ["exit-handler-1"]
    assert exit_task["inputs"]["parameters"]["status"] == {
        "taskFinalStatus": {"producerTask": "exit-handler-1"}
    }
    assert (
        exit_task["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
        == "{{$.pipeline_job_uuid}}"
    )


def test_the_window_ends_at_the_v2_scheduled_time_placeholder(compiled):
    spec = compiled["spec"]
    collect = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]["collect-predictions"]
    parameters = collect["inputs"]["parameters"]
    assert parameters["scheduled_time"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_schedule_time_utc}}"
    )
    assert parameters["window_end"] == {"componentInputParameter": "pipelinechannel--window_end"}
    assert "[[ScheduledTime]]" not in yaml.safe_dump(spec)  # the v1 macro v2 never expands
    window_end = spec["root"]["inputDefinitions"]["parameters"]["window_end"]
    # a non-empty default: the KFP UI reports "" as a missing parameter (kfp#11515)
    assert window_end["defaultValue"] == "scheduled" and window_end["parameterType"] == "STRING"
    assert "scheduled time" in window_end["description"]


def test_only_the_nested_training_tasks_ask_for_a_gpu(compiled):
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        container = executor["container"]
        gpu = container.get("resources", {}).get("accelerator")
        assert (gpu is not None) == name.startswith("exec-train-"), name
        if name.startswith(
            (
                "exec-collect",
                "exec-detect",
                "exec-measure",
                "exec-decide",
                "exec-record",
                "exec-finalize",
            )
        ):
            assert container["image"] == image("runtime")
            assert "pip install" not in " ".join(container["command"])
    k8s = compiled["platform"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-collect-predictions"]["configMapAsEnv"][0]["configMapName"] == "autokfp-config"


# ----------------------------------------------------------------------------- exit handler


@dsl.component(base_image=image("runtime"), install_kfp_package=False)
def crash_during_deploy(config: dict, run_id: str):
    """Stand-in for a run that promoted v2 in the registry and then crashed in its deploy."""
    from autokfp.modeling import registry
    from autokfp.monitoring.runs import remember_run_start
    from autokfp.settings import Settings

    settings = Settings.from_env()
    remember_run_start(settings, config["name"], run_id, "1")
    client = registry.configure(settings)
    client.set_registered_model_alias(config["name"], "previous", "1")
    client.set_registered_model_alias(config["name"], "champion", "2")
    raise RuntimeError("deploy-model: the Kubernetes API is unreachable")


def test_a_run_that_breaks_mid_deploy_restores_the_last_good_champion(tmp_path, autokfp_home):
    from kfp import local

    from autokfp.components import finalize_monitoring
    from autokfp.modeling import registry

    for version, promote in (("1", True), ("2", False)):
        package = tmp_path / f"package-{version}"
        package.mkdir()
        (package / "MLmodel").write_text(f"flavors: {{}}\nversion: {version}\n")
        registry.register_model(
            package,
            "churn-test",
            {},
            {},
            {},
            promote=promote,
            decision="test",
            compared_champion=None,
            settings=autokfp_home,
        )

    @dsl.pipeline(name="exit-handler-check")
    def broken(config: dict):
        exit_task = finalize_monitoring(config=config, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        with dsl.ExitHandler(exit_task):
            crash_during_deploy(config=config, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)

    autokfp_home.export()
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=autokfp_home.pipeline_root,
        raise_on_error=False,
    )
    broken(config=small_config(tmp_path).to_dict())

    client = registry.configure(autokfp_home)
    assert str(registry.champion_version(client, "churn-test").version) == "1"
    assert str(client.get_model_version_by_alias("churn-test", "rejected").version) == "2"
    events = {e["kind"]: e for e in read_events(autokfp_home)}
    failed = events["monitoring.run_failed"]["details"]
    assert failed["state"] == "FAILED" and "failed" in failed["error"]  # what KFP reports
    assert events["deploy.rolled_back"]["details"]["restored_version"] == "1"
    assert verify_trail(autokfp_home).ok


def test_the_typed_form_runs_and_a_bad_value_stops_the_first_task(tmp_path, autokfp_home,
                                                                  capfd, request):
    """kfp.local: the form's model name reaches every task over a config that names none;
    drift_share=1.5 fails resolve-config, naming the setting, nothing else starts, and the
    exit task records the failed run for the model the form names (nothing to restore)."""
    import json

    from kfp import local

    from autokfp.edge.taskfork import forked_tasks
    from autokfp.pipelines import PIPELINES, ClusterOptions

    autokfp_home.export()
    # the tasks forked from a warm worker, as `autokfp monitor` runs them (each its own process)
    stack = contextlib.ExitStack()
    worker = stack.enter_context(forked_tasks())
    request.addfinalizer(stack.close)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=autokfp_home.pipeline_root, raise_on_error=False)
    # kfp.local cannot substitute the schedule-time placeholder (autokfp monitor leaves it out)
    monitoring = PIPELINES["drift-monitoring"](ClusterOptions(schedule_time=False))
    config = {k: v for k, v in small_config(tmp_path).to_dict().items() if k != "name"}
    assert worker is not None and worker.ready(wait=120), "the warm worker did not start"
    monitoring(config=config, model_name="churn-form", window_days=3.0)
    assert worker.forked > 0
    (collection,) = [p for p in Path(autokfp_home.pipeline_root).rglob("collection")
                     if p.is_file()]
    record = json.loads(collection.read_text())
    assert record["model"] == "churn-form" and record["window"]["days"] == 3.0
    assert record["status"] == "no-champion"  # nothing registered under that name
    events = read_events(autokfp_home)
    capfd.readouterr()

    monitoring(config=config, model_name="churn-form", drift_share=1.5)
    output = capfd.readouterr()
    text = output.out + output.err
    assert "monitoring.drift_share" in text and "less than or equal to 1" in text
    started = set(re.findall(r"Executing task .?'([\w-]+)", re.sub(r"\x1b\[[0-9;]*m", "", text)))
    assert started == {"resolve-config", "finalize-monitoring"}, started
    (failed,) = read_events(autokfp_home)[len(events):]
    assert failed["kind"] == "monitoring.run_failed" and failed["model"] == "churn-form"


# ------------------------------------------------------------------------------ end to end


def shift_period(frame: pd.DataFrame, seed: int, id_prefix: str) -> pd.DataFrame:
    """A later period: prices up, contracts and internet mix changed, and churn now driven by
    other things (so a model of period A is worse on it and retraining pays off)."""
    rng = np.random.default_rng(seed)
    shifted = frame.copy()
    shifted["customer_id"] = id_prefix + shifted["customer_id"].str[1:]
    shifted["monthly_charges"] = (shifted["monthly_charges"] + 25.0).round(2)
    shifted["total_charges"] = (
        shifted["monthly_charges"].fillna(60.0) * shifted["tenure_months"]
    ).round(2)
    long_contract = shifted["contract_type"] != "month-to-month"
    shifted.loc[long_contract & (rng.random(len(shifted)) < 0.6), "contract_type"] = (
        "month-to-month"
    )
    slow = shifted["internet_service"] != "fiber"
    shifted.loc[slow & (rng.random(len(shifted)) < 0.5), "internet_service"] = "fiber"
    logit = (
        -1.6
        + 2.2 * (shifted["payment_method"] == "mailed-check")
        + 1.8 * (shifted["region"] == "north")
        - 1.4 * (shifted["internet_service"] == "fiber")
        + 0.03 * (shifted["age"].fillna(44) - 44)
    )
    churned = (rng.random(len(shifted)) < 1 / (1 + np.exp(-logit.to_numpy()))).astype(np.int64)
    shifted["churned"] = churned
    outcome = np.where(
        churned == 1,
        np.where(rng.random(len(shifted)) < 0.35, "accepted-then-left", "declined"),
        np.where(rng.random(len(shifted)) < 0.12, "accepted-stayed", "not-offered"),
    )
    shifted["retention_offer_outcome"] = outcome.astype(object)
    return shifted


def log_traffic(settings, version: str, rows: pd.DataFrame) -> None:
    """What the predictor logs: the requests and the champion's predictions, in batches."""
    from autokfp.modeling.model_package import load_model_package
    from autokfp.serving.inference_service import service_name
    from autokfp.serving.prediction_log import PredictionLogger

    registry.configure(settings)  # this process's MLflow may still point at an earlier test's
    model = load_model_package(f"models:/{MODEL}/{version}").unwrap_python_model()
    requests = rows.drop(columns=["churned"]).reset_index(drop=True)
    logger = PredictionLogger(
        settings.artifact_root, service_name(MODEL), version, flush_rows=500, flush_seconds=0.2
    )
    for start in range(0, len(requests), 100):
        chunk = requests.iloc[start : start + 100].reset_index(drop=True)
        logger.log(chunk, model.predict(None, chunk), request_id=f"req-{version}-{start}")
    logger.close()
    assert logger.written_rows == len(requests) and logger.dropped == 0


def make_config(folder: Path, labels: Path, deploy_target: str = "local") -> RunConfig:
    data = {
        "name": MODEL,
        "sources": [{"name": "files", "kind": "folder", "path": str(folder)}],
        "training": {
            "dataset": "files/customers.parquet",
            "target": "churned",
            "id_column": "customer_id",
            # the loop is the subject, not the refit (test_local_training_pipeline serves
            # one): each of the two training runs would start a JVM and fit twice more
            "refit_for_serving": "never",
        },
        "budget": {**SMALL_BUDGET, "max_runtime_secs": 10},
        "quality": {"min_rows": 100},
        "deploy": {"target": deploy_target, "smoke_rows": 20, "latency_budget_ms": 500},
        "monitoring": {
            "window_days": 1,
            "min_window_rows": 300,
            "drift_share": 0.25,
            "min_labelled_rows": 200,
            "labels": {"path": str(labels)},
        },
    }
    if "engines" in RunConfig.model_fields:  # H2O only: the small budget is for one engine
        data["engines"] = {"h2o": {**SMALL_ENGINES["h2o"], "max_models": 2, "nfolds": 2}}
    if "governance" in RunConfig.model_fields:  # fairness is reported, not the subject here
        data["governance"] = {
            "block_deploy_on_bias": False,
            "mitigate": False,
            "shap_rows": 0,
            "explain_rows": 50,
        }
    return parse_config(data)


def check(decision: dict, trigger: str) -> dict:
    return next(c for c in decision["checks"] if c["trigger"] == trigger)


@pytest.mark.slow
def test_drift_retrains_a_new_champion_and_stable_traffic_does_not(tmp_path, autokfp_home):
    settings = autokfp_home
    logs = settings.home / "logs"
    folder, labels = tmp_path / "data", tmp_path / "labels"
    folder.mkdir()
    labels.mkdir()
    generate_churn(1500, seed=3).to_parquet(folder / "customers.parquet", index=False)
    config = make_config(folder, labels)

    # the first model only writes its manifest (saves a predictor start); retrained ones are
    # deployed locally as a canary, verified and promoted
    trained = run_training(
        make_config(folder, labels, deploy_target="manifest"),
        settings,
        log_path=logs / "train-a.log",
    )
    assert trained.registration["version"] == "1" and trained.registration["aliases"] == [
        "champion"
    ]
    # a manifest target never serves locally: no warm predictor process was started for it
    assert not (logs / "train-a-warm-predictor.log").exists()

    # no traffic yet: nothing to judge, no retraining; the champion's reference is kept
    first = run_monitoring(config, settings, log_path=logs / "monitor-1.log")
    assert first.decision["retrain"] is False
    assert first.decision["status"] == "empty"
    assert "window is empty" in first.decision["summary"]
    assert first.decision["reference"] == "training-data"
    assert storage.exists(reference_uri(settings.artifact_root, MODEL, "1"))

    # period B: shifted traffic served by v1, its labels arrive, the training table is refreshed
    period_b = shift_period(generate_churn(1500, seed=4), seed=5, id_prefix="B")
    log_traffic(settings, "1", period_b)
    period_b[["customer_id", "churned"]].to_parquet(labels / "period-b.parquet", index=False)
    period_b.to_parquet(folder / "customers.parquet", index=False)

    second = run_monitoring(config, settings, log_path=logs / "monitor-2.log")
    decision = second.decision
    assert decision["retrain"] is True, decision["summary"]
    assert decision["reference"] == "stored"
    drift = check(decision, "drift")
    assert drift["fired"] and drift["value"] >= 0.25
    assert "monthly_charges" in drift["detail"] and "contract_type" in drift["detail"]
    assert check(decision, "performance")["fired"]
    retraining = second.retraining
    assert retraining is not None and retraining["registered_version"] == "2"
    assert retraining["promoted"] is True and retraining["champion"] == "2"
    assert retraining["deployment"] == "serving"  # canary verified and promoted
    assert (logs / "monitor-2-warm-predictor.log").exists()  # its predictor was forked warm
    client = registry.configure(settings)
    assert str(registry.champion_version(client, MODEL).version) == "2"
    assert str(client.get_model_version_by_alias(MODEL, registry.PREVIOUS).version) == "1"
    reports = list(second.run_dir.rglob("detect-drift/report"))  # Evidently's HTML
    assert reports and "monthly_charges" in reports[0].read_text()

    # period C: like B, served by v2, no labels yet: no drift against v2's reference, no retraining
    period_c = shift_period(generate_churn(1000, seed=6), seed=7, id_prefix="C")
    log_traffic(settings, "2", period_c)
    third = run_monitoring(config, settings, log_path=logs / "monitor-3.log")
    decision = third.decision
    assert decision["retrain"] is False, decision["summary"]
    # period C plus the deploy's own smoke-test requests (held-out period-B rows)
    assert decision["champion"] == "2" and decision["rows"] >= len(period_c)
    drift = check(decision, "drift")
    assert drift["evaluated"] and not drift["fired"]
    assert not check(decision, "performance")["evaluated"]  # labels never arrived for period C
    assert any("logged by v1" in note for note in decision["notes"])
    assert third.retraining is None
    assert str(registry.champion_version(client, MODEL).version) == "2"

    kinds = [e["kind"] for e in read_events(settings) if e["model"] == MODEL]
    assert [k for k in kinds if k.startswith("retrain.")] == [
        "retrain.skipped",
        "retrain.triggered",
        "retrain.completed",
        "retrain.skipped",
    ]
    trail = verify_trail(settings)
    assert trail.ok, trail.problems
