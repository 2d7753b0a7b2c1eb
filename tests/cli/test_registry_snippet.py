"""The README's Python snippets, as written there, each in a new Python session: the run
(`run_training`) prints one line per step and a summary, its tasks' output (kfp.local, H2O,
MLflow) going to the log file it names; the champion then loads; and neither leaves a file
in the working folder (no ./mlflow.db)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from autokfp.edge.local import STEP_LABELS
from autokfp.errors import RegistryError
from autokfp.modeling.registry import load_model
from tests.conftest import small_config, use_home

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_run_snippet() -> str:
    """The README's `run_training` lines (from a notebook or a script)."""
    text = README.read_text(encoding="utf-8")
    return re.search(r"^(from autokfp\.config import load_config\nfrom autokfp\.edge\.local import "
                     r"run_training\n.*?print\(result\.registration\)[^\n]*)$", text,
                     re.MULTILINE | re.DOTALL).group(1)


def _readme_snippets() -> tuple[str, str]:
    """The autokfp helper's lines and the plain-MLflow block, as the README shows them."""
    text = README.read_text(encoding="utf-8")
    helper = re.search(r"^(from autokfp\.modeling\.registry import load_model.*?model\.predict\(new_customers_df\).*?)$",
                       text, re.MULTILINE | re.DOTALL).group(1)
    plain = re.search(r"```python\n(import mlflow\nmlflow\.set_tracking_uri.*?)```", text,
                      re.DOTALL).group(1)
    return helper, plain


@pytest.mark.slow  # one tiny H2O run: ~3 min idle, ~20 at load 40
def test_the_readme_snippets_load_the_champion_in_a_new_session(tmp_path, monkeypatch,
                                                                 churn_frame) -> None:
    project = tmp_path / "project"  # the folder a user runs from (the repository's, say)
    data = tmp_path / "data"
    data.mkdir(parents=True)
    project.mkdir()
    churn_frame.head(600).to_parquet(data / "customers.parquet", index=False)
    # what the snippets need is a registered champion: the deploy step only writes the
    # InferenceService (no local predictor to start) and the gated model is registered as it
    # is (no refit: a JVM start and two more fits); both are other tests' subjects
    config = small_config(data, engines=["h2o"], budget={"max_runtime_secs": 10},
                          name="churn", deploy={"target": "manifest"},
                          training={"dataset": "files/customers.parquet", "target": "churned",
                                    "id_column": "customer_id", "refit_for_serving": "never"})
    (project / "churn.yaml").write_text(yaml.safe_dump(config.to_dict()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "AUTOKFP_"))}  # a new session: nothing set
    run = subprocess.run([sys.executable, "-c", _readme_run_snippet()], cwd=project, env=env,
                         capture_output=True, text=True, timeout=3600, check=False)
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed[-5000:]
    lines = printed.strip().splitlines()
    # one line to start (naming the log), one per step, the summary, the registration
    assert len(lines) <= len(STEP_LABELS) + 4, printed
    assert lines[0].startswith("Running autonomous-training for churn with kfp.local; each "
                               "task's output: "), lines[0]
    log = Path(lines[0].rsplit(": ", 1)[1])
    assert log.parent == project / ".autokfp" / "logs" and log.is_file()
    # one line per step as it starts, in an order the graph allows (kfp.local may start
    # list-engines, which needs only the checked config, before or after discovery)
    started = [line.split("s ", 1)[1] for line in lines[1:-2]]
    assert set(started) <= set(STEP_LABELS.values()) and len(set(started)) == len(started), started
    assert started[0] == STEP_LABELS["resolve-config"], started
    order = [started.index(STEP_LABELS[step]) for step in
             ("discover", "profile", "engineer-features", "train-model", "select-model",
              "register-model")]
    assert order == sorted(order), started
    assert started.index(STEP_LABELS["list-engines"]) < started.index(STEP_LABELS["train-model"])
    assert lines[-2].startswith("Finished in ") and f"Full log: {log}" in lines[-2]
    assert "'name': 'churn'" in lines[-1]  # the snippet's own print
    logged = log.read_text(errors="replace")
    shown = "\n".join(lines[:-1])  # autokfp's own lines (the last is the snippet's print)
    for noise in ("Executing task", "H2O", "mlflow", "KFP Executor"):  # where the noise went
        assert noise in logged, noise
        assert noise not in shown, noise
    assert len(logged.splitlines()) > 20 * len(lines)
    assert sorted(p.name for p in project.iterdir()) == [".autokfp", "churn.yaml"]  # no stray file

    rows = data / "rows.parquet"
    churn_frame.tail(50).drop(columns=["churned"]).to_parquet(rows, index=False)
    helper, plain = _readme_snippets()
    for snippet in (helper, plain):
        script = textwrap.dedent(f"""
            import pandas as pd
            new_customers_df = pd.read_parquet({str(rows)!r})
            {{}}
            predictions = model.predict(new_customers_df)
            assert len(predictions) == 50, len(predictions)
            assert predictions["prediction"].isin([0, 1]).all(), predictions.head()
            print("PROBABILITY", float(predictions["probability_1"].mean()))
            """).format(snippet)
        done = subprocess.run([sys.executable, "-c", script], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, snippet + "\n" + done.stdout + done.stderr[-3000:]
        probability = float(done.stdout.split("PROBABILITY")[-1])
        assert 0.0 < probability < 1.0
        assert sorted(p.name for p in project.iterdir()) == [".autokfp", "churn.yaml"], snippet


def test_load_model_never_creates_a_registry(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = use_home(monkeypatch, tmp_path / "nowhere")
    with pytest.raises(RegistryError, match="no model registry at .*mlflow.db: run `autokfp demo`"):
        load_model("churn@champion", settings)
    assert not (tmp_path / "nowhere" / "mlflow.db").exists()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize("ref", ["@champion", "churn@", "churn/v1", ""])
def test_load_model_refuses_a_malformed_reference(ref, tmp_path, monkeypatch) -> None:
    settings = use_home(monkeypatch, tmp_path / "home")
    with pytest.raises(RegistryError, match=r"write NAME@ALIAS \(e.g. churn@champion\), NAME/VERSION"):
        load_model(ref, settings)
