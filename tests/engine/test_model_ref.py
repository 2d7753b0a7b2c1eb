"""One reading of a registered model's reference (NAME@ALIAS, NAME/VERSION, NAME), shared by
``registry.load_model``, ``autokfp serve`` and batch scoring; and what each caller does with
it. Bad references fail before any registry is opened, naming the part that is wrong."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest

from autokfp.errors import ConfigError, DeploymentError, ModelRefError, RegistryError
from autokfp.modeling import registry
from autokfp.modeling.registry import ModelRef, parse_model_ref
from autokfp.steps.score_batch import parse_model
from tests.conftest import use_home


@pytest.mark.parametrize(("text", "expected", "written", "uri"), [
    ("churn@champion", ModelRef("churn", alias="champion"), "churn@champion", "models:/churn@champion"),
    ("  churn@previous ", ModelRef("churn", alias="previous"), "churn@previous", "models:/churn@previous"),
    ("churn", ModelRef("churn", alias="champion"), "churn@champion", "models:/churn@champion"),
    ("churn/3", ModelRef("churn", version="3"), "churn/3", "models:/churn/3"),
    ("churn/007", ModelRef("churn", version="7"), "churn/7", "models:/churn/7"),
    ("my_model-2@blue_green-1", ModelRef("my_model-2", alias="blue_green-1"),
     "my_model-2@blue_green-1", "models:/my_model-2@blue_green-1"),
])
def test_every_written_form_is_read_the_same_way(text, expected, written, uri) -> None:
    ref = parse_model_ref(text)
    assert ref == expected
    assert str(ref) == written
    assert ref.uri == uri


@pytest.mark.parametrize(("text", "problem"), [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("@champion", "the model name before '@' or '/' is missing"),
    ("/3", "the model name before '@' or '/' is missing"),
    ("churn@", "the alias after '@' is missing"),
    ("churn/", "the version after '/' is missing"),
    ("churn/v1", "the version after '/' must be a number, not 'v1' (write churn/1)"),
    ("churn/latest", "the version after '/' must be a number, not 'latest'"),
    ("churn/3/4", "must be a number, not '3/4'"),
    ("churn/\u00b2", "must be a number, not '\u00b2'"),  # a digit to isdigit, not to int()
    ("churn@v2", "'@v2' names no alias: for version 2 write churn/2"),
    ("churn@champion/3", "the alias 'champion/3' may hold only letters, digits"),
    ("churn@champ ion", "the alias 'champ ion' may hold only"),
    ("team/churn@champion", "the model name 'team/churn' holds a space, '@' or '/'"),
    ("churn model", "the model name 'churn model' holds a space"),
])
def test_a_malformed_reference_names_what_is_wrong_and_the_forms(text, problem) -> None:
    with pytest.raises(ModelRefError) as raised:
        parse_model_ref(text, what="--model")
    message = str(raised.value)
    assert message.startswith(f"--model '{text}': "), message
    assert problem in message, message
    assert "NAME@ALIAS (e.g. churn@champion), NAME/VERSION (e.g. churn/3) or NAME" in message
    # each caller's own except clause still catches it
    assert isinstance(raised.value, ConfigError) and isinstance(raised.value, RegistryError)


def test_batch_scoring_reads_the_model_parameter_with_the_registry_parser() -> None:
    assert parse_model("from config", {"name": "churn"}) == ModelRef("churn", alias="champion")
    assert parse_model(" ", {"name": "churn"}) == ModelRef("churn", alias="champion")
    assert parse_model("churn/2", None) == ModelRef("churn", version="2")
    assert parse_model("other", {"name": "churn"}) == ModelRef("other", alias="champion")
    with pytest.raises(ModelRefError, match=r"^model 'churn/two': the version after '/' must be"):
        parse_model("churn/two", {"name": "churn"})
    with pytest.raises(ConfigError, match="the config names no model"):
        parse_model("from config", {})


def test_load_model_refuses_a_malformed_reference_before_opening_the_registry(
        tmp_path, monkeypatch) -> None:
    settings = use_home(monkeypatch, tmp_path / "home")
    with pytest.raises(RegistryError, match=r"^model 'churn@v1': '@v1' names no alias"):
        registry.load_model("churn@v1", settings)
    assert not (tmp_path / "home" / "mlflow.db").exists()


class _Constant(mlflow.pyfunc.PythonModel):
    """A pyfunc that answers 1 for each row: enough for the registry to hold a version."""

    def predict(self, context, model_input, params=None):  # noqa: ARG002 - pyfunc signature
        return [1] * len(model_input)


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """``shop`` v1 and v2 in a local SQLite registry, v2 the champion."""
    settings = use_home(monkeypatch, tmp_path / "home")
    client = registry.configure(settings)
    # an experiment of this store's own: mlflow's fluent API keeps the experiment id another
    # test of the same process set (in another store) as a process-wide default
    experiment = client.create_experiment("model-ref")
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(name="model", python_model=_Constant())
        mlflow.register_model(info.model_uri, "shop")
    client.set_registered_model_alias("shop", "champion", "2")
    return settings


def test_serve_resolves_every_form_of_model(registered) -> None:
    from autokfp.edge.serving_commands import resolve_model

    for spec, version in [("shop", "2"), ("shop@champion", "2"), ("shop/1", "1"), (None, "2")]:
        name, resolved, local = resolve_model(spec, registered)
        assert (name, resolved) == ("shop", version), spec
        assert (registered.home / "mlflow.db").exists()
        assert (Path(local) / "MLmodel").is_file(), spec
    with pytest.raises(DeploymentError, match="model 'shop' has no version with alias 'blue'"):
        resolve_model("shop@blue", registered)


def test_serve_refuses_a_malformed_model_before_opening_the_registry(tmp_path,
                                                                     monkeypatch) -> None:
    from autokfp.edge.serving_commands import resolve_model

    settings = use_home(monkeypatch, tmp_path / "home")
    with pytest.raises(ModelRefError, match=r"^--model 'shop/latest': the version after '/'"):
        resolve_model("shop/latest", settings)
    assert not (tmp_path / "home" / "mlflow.db").exists()


def test_autokfp_score_refuses_a_malformed_model_at_once(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from autokfp.edge.cli import app

    use_home(monkeypatch, tmp_path / "home")
    data = tmp_path / "rows.csv"
    data.write_text("a,b\n1,2\n")
    result = CliRunner().invoke(app, ["score", "--dataset", str(data), "--model", "churn@v3"])
    assert result.exit_code == 2, result.output
    assert "--model 'churn@v3': '@v3' names no alias: for version 3 write churn/3" in \
        " ".join(result.output.split()), result.output
    assert not (tmp_path / "home" / "pipeline_root").exists() or not any(
        (tmp_path / "home" / "pipeline_root").iterdir()), "a scoring run was started"


def test_autokfp_score_takes_a_file_path_relative_to_here(tmp_path, monkeypatch) -> None:
    """`autokfp score --dataset data/new.parquet` (a new user's first try) reaches the
    scoring task as the file's absolute path, which it accepts; it failed there after minutes
    with 'is neither <source>/<table or file> ..., an absolute file path, ...'."""
    from typer.testing import CliRunner

    from autokfp.edge import local
    from autokfp.edge.cli import app
    from autokfp.steps.score_batch import _source_of

    settings = use_home(monkeypatch, tmp_path / "home")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "new.csv").write_text("a,b\n1,2\n")
    monkeypatch.chdir(tmp_path)
    seen = {}

    def fake_run_scoring(form, config, settings, log_path=None):  # the pipeline: elsewhere
        seen.update(form)
        return {"model": "shop", "version": "1", "chunks": 1, "rows": 1, "output": "x",
                "skipped_chunks": 0, "scored_chunks": 1, "seconds": 0.1}

    monkeypatch.setattr(local, "run_scoring", fake_run_scoring)
    result = CliRunner().invoke(app, ["score", "--dataset", "data/new.csv", "--model", "shop",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert seen["dataset"] == str(tmp_path / "data" / "new.csv")
    source, dataset_id, relative = _source_of(seen["dataset"], {}, settings)  # the task's reading
    assert relative.endswith("new.csv"), (source, dataset_id, relative)
    # with --config naming a source 'data', data/new.csv is that source's file, kept as typed
    (tmp_path / "run.yaml").write_text(
        "name: shop\nsources: [{name: data, kind: folder, path: /srv/shop}]\n"
        "training: {dataset: data/new.csv, target: b}\n")
    result = CliRunner().invoke(app, ["score", "--dataset", "data/new.csv", "--config",
                                      "run.yaml", "--json"])
    assert result.exit_code == 0, result.output
    assert seen["dataset"] == "data/new.csv"
