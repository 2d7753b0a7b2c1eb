"""``autokfp compile --components``: one loadable component YAML per component."""

# no ``from __future__ import annotations``: the inline pipeline's ``config: dict`` must stay a
# type for KFP, not a string
import contextlib

import pytest
from kfp import compiler, components, dsl

from autokfp.edge.compilation import compile_components, validate_pipeline_yaml
from autokfp.settings import image


def test_component_yamls_load_and_build_a_user_pipeline(tmp_path) -> None:
    written = compile_components(tmp_path / "components")
    from autokfp.components import ALL_COMPONENTS

    assert len(written) == len(ALL_COMPONENTS) + 1  # and training/train_model_on_gpu.yaml
    discover = components.load_component_from_file(str(written["discover"]))
    profile = components.load_component_from_file(str(written["profile"]))
    catalog = components.load_component_from_file(str(written["catalog_sources"]))
    executor = next(iter(discover.pipeline_spec.deployment_spec["executors"].values()))
    assert executor["container"]["image"] == image("runtime")  # the image is baked in

    @dsl.pipeline(name="user-pipeline")
    def user_pipeline(config: dict):
        found = discover(config=config)
        profile(config=config, dataset=found.outputs["dataset"], schema=found.outputs["schema"])
        catalog(config=config)

    target = tmp_path / "user.yaml"
    compiler.Compiler().compile(user_pipeline, str(target))
    spec = validate_pipeline_yaml(target)
    assert {"discover", "profile", "catalog-sources"} <= set(spec["root"]["dag"]["tasks"])


def test_train_model_on_gpu_yaml_keeps_its_gpu_settings_in_a_user_pipeline(
        tmp_path, monkeypatch) -> None:
    """training/train_model_on_gpu.yaml, loaded into a pipeline of the user's, gives the
    training task the GPU request, node selector, toleration, resources and env that
    compile time set (AUTOKFP_GPU_*: 2 GPUs, another node label and taint here); plain
    train_model.yaml carries none of them. The same one-task pipeline named as its component
    (train-model) loses them on load in kfp 2.17: why the YAML is train-model-on-gpu."""
    import yaml

    from autokfp.components import train_model
    from autokfp.pipelines.cluster import CONFIG_KEYS, ClusterOptions
    from autokfp.pipelines.training import train_model_on_gpu

    monkeypatch.setenv("AUTOKFP_GPU_COUNT", "2")
    monkeypatch.setenv("AUTOKFP_GPU_NODE_SELECTOR", "accelerator=a100")
    monkeypatch.setenv("AUTOKFP_GPU_TOLERATION", "gpu-only:NoExecute")
    written = compile_components(tmp_path / "components")
    assert written["train_model_on_gpu"] == tmp_path / "components/training/train_model_on_gpu.yaml"
    on_gpu = components.load_component_from_file(str(written["train_model_on_gpu"]))
    plain = components.load_component_from_file(str(written["train_model"]))
    features = components.load_component_from_file(str(written["engineer_features"]))
    evaluate = components.load_component_from_file(str(written["evaluate_model"]))
    # the same inputs (names, types, defaults) and outputs as the component
    ours = train_model.component_spec
    assert {n: (i.type, i.default) for n, i in on_gpu.component_spec.inputs.items()} == {
        n: (i.type, i.default) for n, i in ours.inputs.items()}
    assert set(on_gpu.component_spec.outputs) == set(ours.outputs)

    def build(trainer, name):
        @dsl.pipeline(name=name)
        def user_pipeline(data: str = "gs://my-bucket/churn.parquet"):
            rows = dsl.importer(artifact_uri=data, artifact_class=dsl.Dataset)
            f = features(dataset=rows.output, target="churned")
            trained = trainer(train=f.outputs["train"], plan=f.outputs["plan"], engine="h2o",
                              budget_seconds=300)
            evaluate(model=trained.outputs["model"], test=f.outputs["test"], model_name="churn")
        target = tmp_path / f"{name}.yaml"
        compiler.Compiler().compile(user_pipeline, str(target))
        documents = list(yaml.safe_load_all(target.read_text()))
        validate_pipeline_yaml(target)
        return documents

    spec, platform = build(on_gpu, "user-on-gpu")
    container = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert container["resources"]["accelerator"]["resourceCount"] == "2"
    assert container["resources"]["resourceCpuRequest"] == ClusterOptions().training_cpu
    assert "autokfp-training" in container["image"]
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train-model"]
    assert executor["nodeSelector"]["labels"] == {"accelerator": "a100"}
    assert executor["tolerations"] == [{"key": "gpu-only", "operator": "Exists",
                                        "effect": "NoExecute"}]
    assert {e["configMapKey"] for e in executor["configMapAsEnv"][0]["keyToEnv"]} == set(CONFIG_KEYS)
    assert executor["secretAsEnv"][0]["secretName"] == "autokfp-credentials"
    evaluated = spec["root"]["dag"]["tasks"]["evaluate-model"]["inputs"]["artifacts"]["model"]
    assert evaluated["taskOutputArtifact"]["producerTask"] == "train-model-on-gpu"

    (spec,) = build(plain, "user-plain")  # no platform spec: nothing set on any task
    assert "resources" not in spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]

    same_name = tmp_path / "same-name.yaml"
    monkeypatch.setattr(train_model_on_gpu, "NAME", "train-model")
    compiler.Compiler().compile(
        train_model_on_gpu.build_train_model_on_gpu(ClusterOptions.from_env()), str(same_name))
    assert "accelerator" in same_name.read_text()  # the YAML holds them...
    (spec,) = build(components.load_component_from_file(str(same_name)), "user-same-name")
    assert "resources" not in spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]


def test_a_user_pipeline_of_loaded_component_yamls_runs_locally(
    tmp_path, autokfp_home, churn_frame, monkeypatch
) -> None:
    import json
    from pathlib import Path

    from kfp import local

    # a loaded lightweight component YAML still runs under SubprocessRunner (it is not a
    # container component), so the reused components run here for real
    written = compile_components(tmp_path / "components")
    catalog = components.load_component_from_file(str(written["catalog_sources"]))
    discover = components.load_component_from_file(str(written["discover"]))
    profile = components.load_component_from_file(str(written["profile"]))
    folder = tmp_path / "files"
    folder.mkdir()
    churn_frame.head(300).to_parquet(folder / "customers.parquet", index=False)
    config = {"name": "churn-reuse", "sources": [{"name": "files", "kind": "folder",
                                                  "path": str(folder)}],
              "training": {"dataset": "files/customers.parquet", "target": "churned"}}

    @dsl.pipeline(name="user-pipeline")
    def user_pipeline(config: dict):
        crawled = catalog(config=config)
        found = discover(config=config).after(crawled)
        profile(config=config, dataset=found.outputs["dataset"], schema=found.outputs["schema"])

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    autokfp_home.export()
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=autokfp_home.pipeline_root, raise_on_error=True)
    user_pipeline(config=config)
    schemas = [p for p in Path(autokfp_home.pipeline_root).rglob("schema") if p.is_file()]
    assert schemas and json.loads(schemas[0].read_text())["row_count"] == 300
    assert [p for p in Path(autokfp_home.pipeline_root).rglob("report") if p.is_file()]


# ------------------------------------------------- a foreign pipeline, no autokfp run config


@dsl.component(base_image="python:3.11")
def copy_csv(source: str, data: dsl.Output[dsl.Dataset]):
    """The user's own step: their data, as a CSV Dataset (not autokfp's Parquet)."""
    import shutil

    shutil.copyfile(source, data.path)


@dsl.component(base_image="python:3.11")
def holdout_auc(model: dsl.Input[dsl.Model], test: dsl.Input[dsl.Dataset], target: str) -> float:
    """The user's own step: load autokfp's model folder with MLflow and score the test rows."""
    import mlflow.pyfunc
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    rows = pd.read_parquet(test.path)
    scored = mlflow.pyfunc.load_model(model.path).predict(rows.drop(columns=[target]))
    return float(roc_auc_score(rows[target].astype(int), scored["probability_1"]))


@pytest.mark.slow  # an end-to-end run that trains a real model, as the marker says
def test_a_foreign_pipeline_uses_loaded_components_without_a_run_config(
    tmp_path, autokfp_home, churn_frame, monkeypatch
) -> None:
    """profile -> engineer_features -> train_model -> evaluate_model -> register_model from
    their YAMLs, between components of the user's own, with typed inputs only (no RunConfig,
    no schema, a CSV dataset), registering in a real ``mlflow server`` over HTTP; then the
    monitoring components' YAMLs watch that champion (``_monitor_with_loaded_components``).
    Trains H2O for 10 s; each task is a subprocess. At load average ~20: 228 s before
    register_model was added, then 336 s with it (b9ae9c3, back to back); 219 s at load
    15-18 since the server starts while the components compile; 312 s at load 12-14 with
    the monitoring pipeline (56 s idle before register_model; idle now not measured)."""
    from kfp import local

    from autokfp.edge.taskfork import forked_tasks
    from tests.conftest import starting_mlflow_server

    # the server starts first and comes up while the components compile (about 30 s at load 20)
    with starting_mlflow_server(tmp_path / "mlflow", str(tmp_path / "mlflow-artifacts"),
                                {}) as (url, wait), contextlib.ExitStack() as stack:
        monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
        autokfp_home.export()
        # the registry is a server: the model's files go through its artifact proxy
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        # and nothing set in this process by an earlier test's registry.configure (mlflow
        # keeps the URIs it was given process-wide, over the variable): CI of c13f8c9 read
        # a SQLite registry here
        import mlflow.tracking._model_registry.utils as registry_uris
        import mlflow.tracking._tracking_service.utils as tracking_uris

        monkeypatch.setattr(tracking_uris, "_tracking_uri", None)
        monkeypatch.setattr(registry_uris, "_registry_uri", None)
        monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)  # set_registry_uri sets it too
        monkeypatch.delenv("AUTOKFP_MLFLOW_ARTIFACT_ROOT", raising=False)
        # the tasks forked from a warm worker, as `autokfp run` runs them (each still its own
        # process): it imports while the components compile; started once the environment
        # the tasks get is set (a task whose environment differs runs as a new interpreter)
        worker = stack.enter_context(forked_tasks(("h2o",)))
        written = compile_components(tmp_path / "components")
        profile = components.load_component_from_file(str(written["profile"]))
        engineer = components.load_component_from_file(str(written["engineer_features"]))
        train = components.load_component_from_file(str(written["train_model"]))
        evaluate = components.load_component_from_file(str(written["evaluate_model"]))
        register = components.load_component_from_file(str(written["register_model"]))
        # what a user's pipeline sees: typed inputs with defaults, config and schema optional
        inputs = train.component_spec.inputs
        assert inputs["config"].optional and inputs["budget_seconds"].default == -1
        assert inputs["engine"].default == "h2o"
        assert engineer.component_spec.inputs["schema"].optional
        assert profile.component_spec.inputs["schema"].optional
        assert {"config", "schema", "dataset"} <= {
            name for name, spec in register.component_spec.inputs.items() if spec.optional}

        source = tmp_path / "customers.csv"
        churn_frame.head(1200).to_csv(source, index=False)

        @dsl.pipeline(name="user-churn")
        def user_pipeline(source: str) -> float:
            data = copy_csv(source=source)
            checked = profile(dataset=data.outputs["data"], target="churned")
            features = engineer(dataset=data.outputs["data"], target="churned", task="binary")
            features.after(checked)
            trained = train(train=features.outputs["train"], plan=features.outputs["plan"],
                            engine="h2o", budget_seconds=10)
            evaluated = evaluate(model=trained.outputs["model"], test=features.outputs["test"],
                                 model_name="user-churn")  # the target is the model's
            # no schema from discover: the user's data is profiled for the lineage tags
            register(model=trained.outputs["model"], evaluation=evaluated.outputs["evaluation"],
                     dataset=data.outputs["data"], model_name="user-churn",
                     kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, pipeline_name="user-churn")
            return holdout_auc(model=trained.outputs["model"], test=features.outputs["test"],
                               target="churned").output

        compiler.Compiler().compile(user_pipeline, str(tmp_path / "user.yaml"))
        validate_pipeline_yaml(tmp_path / "user.yaml")

        local.init(runner=local.SubprocessRunner(use_venv=False),
                   pipeline_root=autokfp_home.pipeline_root, raise_on_error=True)
        wait()  # the server came up while the components compiled
        assert worker is not None and worker.ready(wait=120), "the warm worker did not start"
        auc = user_pipeline(source=str(source)).output
        # autokfp's components ran in forked tasks (the user's own two reinstall kfp first:
        # their command is not the plain one, so they ran as new interpreters)
        assert worker.forked >= 5, worker.forked
        stack.close()  # the monitoring pipeline's tasks get another environment (below)
        _check_registration(url, tmp_path, autokfp_home, source, auc)
        _monitor_with_loaded_components(written, tmp_path, autokfp_home, churn_frame, source)
        # the example data's oracle AUC is about 0.856; a model that learnt nothing scores 0.5
        assert auc > 0.75, auc
        # evaluate_model scored the same model on the same rows: the same AUC, and with no
        # champion of "user-churn" registered the candidate wins
        import json
        from pathlib import Path

        (evaluation,) = [p for p in Path(autokfp_home.pipeline_root).rglob("evaluation")
                         if p.is_file()]
        record = json.loads(evaluation.read_text())
        assert abs(record["metrics"]["auc"] - auc) < 1e-6, record["metrics"]
        assert record["comparison"]["promote"] is True and record["champion"] is None


def _monitor_with_loaded_components(written, tmp_path, autokfp_home, churn_frame,
                                    source) -> None:
    """The user's monitoring pipeline of the monitoring YAMLs, typed inputs only: the champion
    registered above serves from the real predictor (``python -m autokfp.serving``, the model
    fetched from the MLflow server), which logs what it answers; 600 unseen rows with two
    features shifted are sent to it over HTTP and their labels arrive as a CSV. collect →
    drift, performance → anomalies → decide, inside a ``dsl.ExitHandler`` of
    finalize_monitoring, with the user's training CSV as the reference."""
    import json
    from pathlib import Path

    import httpx
    import mlflow.artifacts
    from sklearn.metrics import roc_auc_score

    from tests.serving import servers

    collect = components.load_component_from_file(str(written["collect_predictions"]))
    drift = components.load_component_from_file(str(written["detect_drift"]))
    measure = components.load_component_from_file(str(written["measure_performance"]))
    anomalies = components.load_component_from_file(str(written["detect_anomalies"]))
    decide = components.load_component_from_file(str(written["decide_retraining"]))
    finalize = components.load_component_from_file(str(written["finalize_monitoring"]))
    for loaded in (collect, drift, measure, anomalies, decide, finalize):
        assert loaded.component_spec.inputs["config"].optional, loaded.name

    served = Path(mlflow.artifacts.download_artifacts("models:/user-churn@champion",
                                                      dst_path=str(tmp_path / "served")))
    live = churn_frame.iloc[1200:1800].reset_index(drop=True)  # rows the model never saw
    live["monthly_charges"] = live["monthly_charges"] * 1.6
    live["last_login_days_ago"] = live["last_login_days_ago"] + 45
    server = servers.start(served, tmp_path, model="user-churn",
                           env={"AUTOKFP_ARTIFACT_ROOT": str(autokfp_home.artifact_root)})
    answers = []
    try:
        servers.wait_ready(server)
        requests = live.drop(columns=["churned"])
        for start in range(0, len(requests), 100):
            records = [{k: servers.json_value(v) for k, v in row.items()}
                       for row in requests.iloc[start:start + 100].to_dict(orient="records")]
            response = httpx.post(f"{server.url}/v1/models/user-churn:predict",
                                  json={"instances": records}, timeout=60)
            assert response.status_code == 200, response.text
            answers += response.json()["predictions"]
    finally:
        assert servers.stop(server) == 0, server.output_tail()  # flushes the prediction log
    served_auc = roc_auc_score(live["churned"].astype(int),
                               [answer["probability_1"] for answer in answers])
    (tmp_path / "labels").mkdir()
    live[["customer_id", "churned"]].to_csv(tmp_path / "labels" / "labels.csv", index=False)

    @dsl.pipeline(name="user-churn-monitoring")
    def user_monitoring(source: str, labels: str):
        exit_task = finalize(model_name="user-churn", run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        with dsl.ExitHandler(exit_task):
            reference = copy_csv(source=source)  # the user's training data, their format
            collected = collect(model_name="user-churn", labels=labels,
                                id_column="customer_id", min_window_rows=100,
                                reference_data=reference.outputs["data"],
                                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            drifted = drift(current=collected.outputs["current"],
                            reference=collected.outputs["reference"],
                            collection=collected.outputs["collection"])
            measured = measure(current=collected.outputs["current"],
                               collection=collected.outputs["collection"],
                               min_labelled_rows=50)
            found = anomalies(current=collected.outputs["current"],
                              collection=collected.outputs["collection"],
                              drift=drifted.outputs["drift"],
                              performance=measured.outputs["performance"],
                              run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            decide(collection=collected.outputs["collection"], drift=drifted.outputs["drift"],
                   performance=measured.outputs["performance"],
                   anomalies=found.outputs["anomalies"], run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                   drift_share=0.1)

    compiler.Compiler().compile(user_monitoring, str(tmp_path / "monitoring.yaml"))
    validate_pipeline_yaml(tmp_path / "monitoring.yaml")
    from autokfp.edge.taskfork import forked_tasks

    with forked_tasks() as worker:  # forked from a warm worker, as `autokfp monitor` runs them
        assert worker is not None and worker.ready(wait=120), "the warm worker did not start"
        user_monitoring(source=str(source), labels=str(tmp_path / "labels"))
    assert worker.forked >= 5, worker.forked

    def written_json(name: str) -> dict:
        (path,) = [p for p in Path(autokfp_home.pipeline_root).rglob(name) if p.is_file()]
        return json.loads(path.read_text())

    collection = written_json("collection")
    assert (collection["model"], collection["status"], collection["rows"]) == \
        ("user-churn", "ok", 600), collection
    assert collection["labelled_rows"] == 600, collection["labels"]  # the champion's target
    assert collection["reference"]["source"] == "input", collection["reference"]
    drift_record = written_json("drift")
    drifted_columns = drift_record["features"]["drifted_columns"]
    assert {"monthly_charges", "last_login_days_ago"} <= set(drifted_columns), drift_record
    performance = written_json("performance")
    # the labels joined by id: the live AUC is the served answers' own
    assert performance["live"] == pytest.approx(served_auc, abs=1e-9), performance
    decision = written_json("decision")
    assert decision["retrain"] is True and decision["model"] == "user-churn", decision
    assert any("drift" in reason for reason in decision["reasons"]), decision["reasons"]


def _check_registration(url: str, tmp_path, autokfp_home, source, auc: float) -> None:
    """register_model of the foreign pipeline: version 1 of user-churn in the MLflow server,
    champion (none before it), tagged with the KFP run, the pipeline and the profiled data;
    the model fetched back over HTTP scores the holdout rows as the pipeline's own step did."""
    import json
    from pathlib import Path

    import mlflow.pyfunc
    import pandas as pd
    from mlflow import MlflowClient
    from sklearn.metrics import roc_auc_score

    (registration,) = [p for p in Path(autokfp_home.pipeline_root).rglob("registration")
                       if p.is_file()]
    record = json.loads(registration.read_text())
    assert (record["name"], record["version"], record["target"]) == ("user-churn", "1", "churned")
    # the registry named too: a registry URI set in this process by an earlier test (mlflow
    # keeps it globally) would otherwise be asked instead (CI of c13f8c9: a SQLite store)
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    version = client.get_model_version_by_alias("user-churn", "champion")
    assert version.version == "1"
    tags = version.tags
    assert tags["kfp.pipeline_name"] == "user-churn" and tags["kfp.run_id"], tags
    assert tags["engine"] == "h2o" and len(tags["dataset_fingerprint"]) >= 16, tags
    assert client.get_run(version.run_id).data.metrics["test_auc"] == pytest.approx(auc)
    (test,) = [p for p in Path(autokfp_home.pipeline_root).rglob("test") if p.is_file()]
    rows = pd.read_parquet(test)
    # models:/ and mlflow-artifacts:/ resolve through the process-wide URIs
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        fetched = mlflow.pyfunc.load_model("models:/user-churn@champion")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    scored = fetched.predict(rows.drop(columns=["churned"]))
    assert roc_auc_score(rows["churned"].astype(int), scored["probability_1"]) == \
        pytest.approx(auc)
