"""Batch scoring against the real things: a model registered in an ``mlflow server`` over
HTTP whose artifacts live in S3 (moto), input Parquet in S3, predictions to S3 and to a SQL
table; the component, the compiled pipeline under kfp.local, ``autokfp score`` and a
recurring run; lineage dataset -> model -> predictions in the catalog."""

from __future__ import annotations

import io
import json
import sqlite3
import uuid

import boto3
import pandas as pd
import pytest
from kfp.dsl import Artifact, Metrics
from typer.testing import CliRunner

from autokfp.catalog.lineage import lineage
from autokfp.components import score_batch
from autokfp.edge.local import run_scoring
from autokfp.errors import ConfigError
from autokfp.serving.batch import read_store_predictions
from tests.components import artifact
from tests.conftest import mlflow_server

MODEL = "churn-batch"


@pytest.fixture(scope="module")
def _registry_on_s3(s3_server, trained_package, churn_frame, tmp_path_factory):
    """An MLflow server whose artifacts go to S3, with the session's trained package
    registered there as churn-batch v1 (champion), and 900 rows to score in S3: started and
    registered once for the module (each test that scores against it started its own
    server and registered the same package again: ~10 CPU-s a test). The tests only read
    the registry; each gets its own artifact store and output prefix (``registered_on_s3``)."""
    from autokfp.modeling import registry
    from tests.conftest import use_home

    prefix = f"s3://{s3_server.bucket}/batch-{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("mlflow-s3")
    with mlflow_server(folder / "mlflow", f"{prefix}/mlflow", s3_server.env) as url, \
            pytest.MonkeyPatch.context() as patch:
        use_home(patch, folder / "autokfp-home")
        patch.setenv("MLFLOW_TRACKING_URI", url)
        patch.setenv("AUTOKFP_ARTIFACT_ROOT", f"{prefix}/store")
        registered = registry.register_model(
            trained_package.paths.model, MODEL, {"test_auc": 0.8}, {}, {}, promote=True,
            decision="first", compared_champion=None)
        assert registered.version == "1"
        rows = churn_frame.drop(columns=["churned"]).tail(900).reset_index(drop=True)
        buffer = io.BytesIO()
        rows.to_parquet(buffer, index=False)
        key = f"{prefix.split('/', 3)[3]}/input/new_customers.parquet"
        boto3.client("s3", endpoint_url=s3_server.endpoint).put_object(
            Bucket=s3_server.bucket, Key=key, Body=buffer.getvalue())
        patch.undo()
        yield {"url": url, "rows": rows, "dataset": f"{prefix}/input/new_customers.parquet"}


@pytest.fixture
def registered_on_s3(_registry_on_s3, s3_server, autokfp_home, monkeypatch):
    """The module's registry (``_registry_on_s3``: churn-batch v1 the champion, 900 rows to
    score in S3) for one test: a fresh AUTOKFP_HOME, and an artifact store and ``prefix``
    in S3 of its own, where its outputs go."""
    prefix = f"s3://{s3_server.bucket}/batch-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _registry_on_s3["url"])
    monkeypatch.setenv("AUTOKFP_ARTIFACT_ROOT", f"{prefix}/store")
    return {"prefix": prefix, "rows": _registry_on_s3["rows"],
            "dataset": _registry_on_s3["dataset"]}


def _offline(trained_package, rows: pd.DataFrame) -> pd.DataFrame:
    from autokfp.modeling.model_package import load_model_package

    return load_model_package(str(trained_package.paths.model)).predict(rows)


def test_the_component_scores_s3_parquet_into_s3_and_resumes(registered_on_s3, trained_package,
                                                             tmp_path) -> None:
    data = registered_on_s3
    summary, metrics = artifact(Artifact, tmp_path, "summary"), artifact(Metrics, tmp_path, "m")
    where = score_batch.python_func(dataset=data["dataset"], summary=summary, metrics=metrics,
                                    model=f"{MODEL}@champion", output=f"{data['prefix']}/scores",
                                    chunk_rows=400)
    assert where.startswith(f"{data['prefix']}/scores/{MODEL}/v1/")
    written = read_store_predictions(where)
    # the keys (the id column the model dropped) next to the same predictions as offline
    assert list(written.columns[:2]) == ["customer_id", "prediction"]
    assert written["customer_id"].tolist() == data["rows"]["customer_id"].tolist()
    offline = _offline(trained_package, data["rows"])
    pd.testing.assert_series_equal(written["probability_1"], offline["probability_1"],
                                   check_names=False)
    report = json.loads(open(summary.path).read())
    assert (report["chunks"], report["scored_chunks"], report["skipped_chunks"]) == (3, 3, 0)
    assert summary.metadata["model_version"] == "1" and summary.metadata["output"] == where
    # lineage: the input dataset -> churn-batch v1 -> the predictions
    (node,) = lineage(f"{MODEL} v1")
    downstream = {d["name"]: d["relation"] for d in node["downstream"]}
    upstream = {d["name"]: d["relation"] for d in node["upstream"]}
    assert downstream.get(where) == "predicted"
    assert any(r == "scored_by" and "new_customers.parquet" in n for n, r in upstream.items())
    # a rerun of the same batch (a retried task) writes nothing again
    again = score_batch.python_func(dataset=data["dataset"], summary=summary, metrics=metrics,
                                    model=MODEL, output=f"{data['prefix']}/scores", chunk_rows=400)
    assert again == where and json.loads(open(summary.path).read())["skipped_chunks"] == 3


def test_an_s3_folder_of_parquet_parts_is_scored_in_order_and_resumes(
        registered_on_s3, trained_package, s3_server, tmp_path) -> None:
    """A prefix written with a trailing "/" is one dataset of its Parquet parts (as Spark
    writes a table partitioned by day: hive partition folders, a _SUCCESS marker, a killed
    attempt's _temporary/ folder), scored in the parts' path order; the model gets the
    day column beside the others."""
    data = registered_on_s3
    bucket_key = data["prefix"].split("/", 3)[3]
    client = boto3.client("s3", endpoint_url=s3_server.endpoint)
    rows = data["rows"]
    for index, part in enumerate((rows.iloc[:300], rows.iloc[300:700], rows.iloc[700:])):
        buffer = io.BytesIO()
        part.to_parquet(buffer, index=False)
        client.put_object(Bucket=s3_server.bucket, Body=buffer.getvalue(),
                          Key=f"{bucket_key}/parts/day={index + 1}/part-0.parquet")
    buffer = io.BytesIO()
    rows.iloc[:50].to_parquet(buffer, index=False)  # readable rows that must not be scored
    client.put_object(Bucket=s3_server.bucket, Body=buffer.getvalue(),
                      Key=f"{bucket_key}/parts/_temporary/0/day=4/part-0.parquet")
    client.put_object(Bucket=s3_server.bucket, Key=f"{bucket_key}/parts/_SUCCESS", Body=b"")
    summary, metrics = artifact(Artifact, tmp_path, "summary"), artifact(Metrics, tmp_path, "m")
    folder = f"{data['prefix']}/parts/"
    where = score_batch.python_func(dataset=folder, summary=summary, metrics=metrics,
                                    model=MODEL, output=f"{data['prefix']}/scores",
                                    chunk_rows=400)
    written = read_store_predictions(where)
    assert written["customer_id"].tolist() == rows["customer_id"].tolist()
    pd.testing.assert_series_equal(written["probability_1"],
                                   _offline(trained_package, rows)["probability_1"],
                                   check_names=False)
    report = json.loads(open(summary.path).read())
    assert report["dataset"] == folder.rstrip("/") and report["rows"] == 900, report
    (node,) = lineage(f"{MODEL} v1")
    assert any(d["relation"] == "scored_by" and d["name"].endswith("/parts")
               for d in node["upstream"]), node["upstream"]
    # the same parts again: the same batch, nothing scored twice
    again = score_batch.python_func(dataset=folder, summary=summary, metrics=metrics,
                                    model=MODEL, output=f"{data['prefix']}/scores",
                                    chunk_rows=400)
    assert again == where and json.loads(open(summary.path).read())["skipped_chunks"] == 3


def test_the_pipeline_writes_a_sql_table_and_the_cli_and_a_schedule_reach_it(
        registered_on_s3, trained_package, tmp_path, kfp_api) -> None:
    data = registered_on_s3
    db = tmp_path / "scores.db"
    form = {"dataset": data["dataset"], "model": f"{MODEL}@champion",
            "output": f"sqlite:///{db}#churn_scores", "keys": "customer_id", "chunk_rows": 500}
    summary = run_scoring(form, log_path=tmp_path / "score.log")
    assert (summary["rows"], summary["chunks"], summary["skipped_chunks"]) == (900, 2, 0)
    with sqlite3.connect(db) as connection:
        table = pd.read_sql("SELECT * FROM churn_scores ORDER BY chunk", connection)
    assert table["customer_id"].tolist() == data["rows"]["customer_id"].tolist()
    assert set(table["model_version"]) == {"1"}
    # `autokfp score` runs the same pipeline: the batch is there, every chunk is skipped
    from autokfp.edge.cli import app

    result = CliRunner().invoke(app, ["score", "--dataset", data["dataset"], "--model", MODEL,
                                      "--output", form["output"], "--keys", "customer_id",
                                      "--chunk-rows", "500", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["skipped_chunks"] == 2
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM churn_scores").fetchone()[0] == 900
    # a recurring run of the compiled pipeline, through the KFP API
    scheduled = CliRunner().invoke(app, [
        "score", "--dataset", data["dataset"], "--model", MODEL, "--output",
        f"{data['prefix']}/scores", "--cron", "0 0 2 * * *", "--host", kfp_api.url])
    assert scheduled.exit_code == 0, scheduled.output
    (run,) = kfp_api.recurring.values()
    assert run["display_name"] == f"{MODEL}-batch-scoring"
    assert run["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert run["runtime_config"]["parameters"]["dataset"] == data["dataset"]
    assert kfp_api.uploads[-1]["pipelineInfo"]["name"] == "batch-scoring"


def test_an_unknown_model_is_named(registered_on_s3, tmp_path) -> None:
    summary, metrics = artifact(Artifact, tmp_path, "summary"), artifact(Metrics, tmp_path, "m")
    with pytest.raises(ConfigError, match=f"model '{MODEL}@nope' is not in the registry"):
        score_batch.python_func(dataset=registered_on_s3["dataset"], summary=summary,
                                metrics=metrics, model=f"{MODEL}@nope")


def test_a_catalogued_dataset_is_scored_by_its_datahub_urn(trained_package, churn_frame,
                                                           autokfp_home, tmp_path,
                                                           monkeypatch) -> None:
    from pydantic import TypeAdapter

    from autokfp.catalog.crawl import crawl_sources
    from autokfp.config import Source
    from autokfp.modeling import registry

    monkeypatch.delenv("DATAHUB_GMS_URL", raising=False)
    registry.register_model(trained_package.paths.model, MODEL, {"test_auc": 0.8}, {}, {},
                            promote=True, decision="first", compared_champion=None)
    folder = tmp_path / "lake"
    folder.mkdir()
    rows = churn_frame.drop(columns=["churned"]).tail(300).reset_index(drop=True)
    rows.to_parquet(folder / "new_customers.parquet", index=False)
    crawl_sources(TypeAdapter(list[Source]).validate_python(
        [{"name": "lake", "kind": "folder", "path": str(folder)}]))
    urn = ("urn:li:dataset:(urn:li:dataPlatform:file,"
           f"{str(folder / 'new_customers.parquet').lstrip('/')},PROD)")
    summary, metrics = artifact(Artifact, tmp_path, "summary"), artifact(Metrics, tmp_path, "m")
    where = score_batch.python_func(dataset=urn, summary=summary, metrics=metrics,
                                    model=MODEL, output=str(tmp_path / "scores"))
    written = read_store_predictions(where)
    assert written["customer_id"].tolist() == rows["customer_id"].tolist()
    assert json.loads(open(summary.path).read())["dataset"] == "run-form/new_customers.parquet"
    with pytest.raises(ConfigError, match="is not in the catalog"):
        score_batch.python_func(dataset=urn.replace("new_customers", "old"), summary=summary,
                                metrics=metrics, model=MODEL, output=str(tmp_path / "scores"))


def test_a_literal_password_is_refused_in_a_pod(tmp_path, monkeypatch) -> None:
    """As the run forms (resolve_config): in a pipeline's pod, a literal password in the
    dataset, the output or a SQL source of the config is refused, naming where, never the
    password; ``${VAR}`` gets past this check (and on to the next: the shared state)."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.delenv("AUTOKFP_RUNNER_PID", raising=False)
    summary, metrics = artifact(Artifact, tmp_path, "summary"), artifact(Metrics, tmp_path, "m")
    cases = {
        "dataset": {"dataset": "postgresql://reader:s3cret-pw@db.example/crm#customers"},
        "output": {"dataset": "gs://bucket/new.parquet",
                   "output": "postgresql://writer:s3cret-pw@db.example/crm#scores"},
        "config source crm": {"dataset": "crm/customers", "config": {"name": "churn", "sources": [
            {"name": "crm", "kind": "sql",
             "url": "postgresql://reader:x@db.example/crm?password=s3cret-pw"}]}},
    }
    for where, inputs in cases.items():
        with pytest.raises(ConfigError) as raised:
            score_batch.python_func(summary=summary, metrics=metrics, model="churn", **inputs)
        message = str(raised.value)
        assert f"score_batch: {where} hold a literal password" in message, message
        assert "s3cret-pw" not in message and "${VAR}" in message
    with pytest.raises(ConfigError) as raised:  # from the Secret: past this check
        score_batch.python_func(
            summary=summary, metrics=metrics, model="churn",
            dataset="postgresql://reader:${PG_PASSWORD}@db.example/crm#customers")
    assert "literal password" not in str(raised.value)
