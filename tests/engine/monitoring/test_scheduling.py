"""``autokfp schedule`` against a local KFP API server that checks every call.

The server (127.0.0.1) implements the v2beta1 endpoints kfp.Client uses to upload a
pipeline and a version, create an experiment and create a recurring run. Each JSON body is
checked field by field against the kfp_server_api model (no unknown field) and
deserialised into it; each uploaded file must be a valid pipeline spec (tests/kfp_api_fake.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from autokfp.edge.scheduling import SchedulingError, schedule_monitoring, validate_cron
from autokfp.errors import ConfigError
from tests.conftest import small_config
from tests.kfp_api_fake import API

_COMPILED: dict[tuple[str, str], bytes] = {}


@pytest.fixture(autouse=True)
def _each_pipeline_compiled_once(monkeypatch):
    """Compiles each pipeline once per module (a compile of drift-monitoring, the training
    graph nested in it, took 10-30 s a test on a loaded machine: most of these tests' time);
    later calls get the same bytes. Every upload is still validated by the fake API, and the
    compile itself is tested in tests/compile. That scheduling again uploads nothing rests on
    a compile giving the same bytes every time: test_allowed_local_paths_are_each_warned_about_once
    compares the digest of a compile in a new process with this process's."""
    from autokfp.edge import scheduling
    from autokfp.pipelines import ClusterOptions

    compile_pipeline = scheduling.compile_pipeline

    def compiled_once(name: str, path) -> str:
        key = (name, repr(ClusterOptions.from_env()))
        if key not in _COMPILED:
            compile_pipeline(name, path)
            _COMPILED[key] = Path(path).read_bytes()
        Path(path).write_bytes(_COMPILED[key])
        return hashlib.sha256(_COMPILED[key]).hexdigest()

    monkeypatch.setattr(scheduling, "compile_pipeline", compiled_once)


def _config(tmp_path):
    """A config a cluster can use: its data in an object store, not on this machine."""
    return small_config(tmp_path, monitoring={"schedule": "0 30 */6 * * *"},
                        sources=[{"name": "files", "kind": "s3", "uri": "s3://lake/churn"}])


def test_schedule_uploads_creates_the_experiment_and_the_recurring_run(kfp_api, tmp_path):
    config = _config(tmp_path)
    result = schedule_monitoring(config, host=kfp_api.url)
    assert (
        result.created
        and result.cron == "0 30 */6 * * *"
        and result.name == "churn-test-drift-monitoring"
    )
    posts = [path for method, path in kfp_api.calls if method == "POST"]
    assert posts == [
        f"{API}/pipelines/upload",
        f"{API}/pipelines/upload_version",
        f"{API}/experiments",
        f"{API}/recurringruns",
    ]
    (run,) = kfp_api.recurring.values()
    assert run["trigger"]["cron_schedule"]["cron"] == "0 30 */6 * * *"
    assert (
        int(run["max_concurrency"]) == 1 and run["no_catchup"] is True and run["mode"] == "ENABLE"
    )
    assert run["runtime_config"]["parameters"] == {
        "config": config.to_dict(),
        "window_end": "scheduled",
    }
    assert run["pipeline_version_reference"]["pipeline_version_id"] == result.pipeline_version_id
    # what was uploaded is the monitoring pipeline with the training graph nested in it
    spec = kfp_api.uploads[-1]
    assert spec["pipelineInfo"]["name"] == "drift-monitoring"
    assert "comp-autonomous-training" in spec["components"]


def test_scheduling_again_is_idempotent_and_a_new_cron_replaces_the_run(kfp_api, tmp_path):
    config = _config(tmp_path)
    first = schedule_monitoring(config, host=kfp_api.url)
    calls = len(kfp_api.calls)
    again = schedule_monitoring(config, host=kfp_api.url)
    assert not again.created and again.recurring_run_id == first.recurring_run_id
    assert all(
        method == "GET" for method, _ in kfp_api.calls[calls:]
    )  # nothing uploaded or created
    changed = schedule_monitoring(config, host=kfp_api.url, cron="0 0 3 * * 1")
    assert changed.created and list(kfp_api.recurring) == [changed.recurring_run_id]
    assert ("DELETE", f"{API}/recurringruns/{first.recurring_run_id}") in kfp_api.calls
    assert len(kfp_api.versions) == 2  # KFP's first version + ours; no re-upload


def test_bad_cron_and_api_errors_are_plain_messages(kfp_api, tmp_path):
    assert validate_cron("0  0 */6 * * *") == "0 0 */6 * * *"
    with pytest.raises(
        ConfigError, match=r"6 fields, seconds first.*did you mean '0 0 \*/6 \* \* \*'"
    ):
        validate_cron("0 */6 * * *")
    kfp_api.fail_create = True
    with pytest.raises(SchedulingError, match="refused to create the recurring run: HTTP 500"):
        schedule_monitoring(_config(tmp_path), host=kfp_api.url)


def test_the_schedule_command(kfp_api, tmp_path):
    from autokfp.edge.cli import app

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path).to_dict()))
    result = CliRunner().invoke(
        app, ["schedule", str(path), "--host", kfp_api.url, "--cron", "0 0 * * * *"]
    )
    assert result.exit_code == 0, result.output
    assert "Created recurring run churn-test-drift-monitoring" in " ".join(result.output.split())
    bad = CliRunner().invoke(
        app, ["schedule", str(path), "--host", kfp_api.url, "--cron", "* * * *"]
    )
    assert bad.exit_code == 2 and "6 fields" in bad.output
    assert Path(path).exists()


def test_submit_starts_one_run_with_the_config_and_the_compiled_spec(kfp_api, tmp_path):
    from autokfp.edge.scheduling import submit_run

    config = _config(tmp_path)
    result = submit_run(config, host=kfp_api.url, experiment="team-a", run_name="first")
    (run,) = kfp_api.runs.values()
    assert result.run_id == run["run_id"] and result.run_name == run["display_name"] == "first"
    assert run["runtime_config"]["parameters"] == {"config": config.to_dict()}
    (experiment,) = kfp_api.experiments.values()
    assert experiment["display_name"] == "team-a" and run["experiment_id"] == experiment["experiment_id"]
    spec = kfp_api.uploads[-1]
    assert spec["pipelineInfo"]["name"] == "autonomous-training"
    # a second submit reuses the experiment and starts a second run
    submit_run(config, pipeline="discovery", host=kfp_api.url, experiment="team-a")
    assert len(kfp_api.experiments) == 1 and len(kfp_api.runs) == 2
    assert kfp_api.uploads[-1]["pipelineInfo"]["name"] == "discovery"


def test_submit_cli_names_an_unknown_pipeline_and_prints_the_run(kfp_api, tmp_path):
    from autokfp.edge.cli import app

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path).to_dict()))
    bad = CliRunner().invoke(app, ["submit", str(path), "--pipeline", "nope", "--host", kfp_api.url])
    assert bad.exit_code == 2 and "unknown pipeline 'nope'" in bad.output
    assert "autonomous-training" in bad.output and not kfp_api.runs
    good = CliRunner().invoke(app, ["submit", str(path), "--host", kfp_api.url, "--json"])
    assert good.exit_code == 0, good.output
    printed = json.loads(good.output)  # nothing but the JSON on stdout
    assert printed["run_id"] in kfp_api.runs
    assert printed["url"] == f"{kfp_api.url}/#/runs/details/{printed['run_id']}"


def test_submit_and_schedule_refuse_local_paths_by_default(kfp_api, tmp_path):
    from autokfp.edge.cli import app
    from autokfp.edge.scheduling import submit_run

    local = small_config(tmp_path, monitoring={"schedule": "0 30 */6 * * *"}, sources=[
        {"name": "files", "kind": "folder", "path": str(tmp_path)},
        {"name": "wh", "kind": "sql", "url": f"sqlite:///{tmp_path}/wh.db"}])
    with pytest.raises(ConfigError) as refused:
        submit_run(local, host=kfp_api.url)
    message = str(refused.value)
    assert f"folder '{tmp_path}'" in message and "SQLite" in message
    assert "--allow-local-paths" in message
    with pytest.raises(ConfigError, match="--allow-local-paths"):
        schedule_monitoring(local, host=kfp_api.url)
    assert not kfp_api.runs and not kfp_api.recurring and not kfp_api.calls

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(local.to_dict()))
    bad = CliRunner().invoke(app, ["submit", str(path), "--host", kfp_api.url])
    assert bad.exit_code == 2 and "pods cannot read" in " ".join(bad.output.split())
    # on request they go through, each one warned about
    allowed = CliRunner().invoke(app, ["submit", str(path), "--host", kfp_api.url,
                                       "--allow-local-paths", "--json"])
    assert allowed.exit_code == 0, allowed.output
    assert len(kfp_api.runs) == 1
    result = submit_run(local, host=kfp_api.url, allow_local_paths=True)
    assert len(result.warnings) == 2


def test_service_account_reaches_the_run_and_the_recurring_run(kfp_api, tmp_path):
    from autokfp.edge.cli import app
    from autokfp.edge.scheduling import submit_run

    config = _config(tmp_path)
    result = submit_run(config, host=kfp_api.url, service_account="autokfp-pipeline-runner")
    assert kfp_api.runs[result.run_id]["service_account"] == "autokfp-pipeline-runner"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    done = CliRunner().invoke(app, ["schedule", str(path), "--host", kfp_api.url,
                                    "--service-account", "autokfp-pipeline-runner"])
    assert done.exit_code == 0, done.output
    (recurring,) = kfp_api.recurring.values()
    assert recurring["service_account"] == "autokfp-pipeline-runner"
    # another account replaces the recurring run (its pods would run as someone else)
    changed = schedule_monitoring(config, host=kfp_api.url, service_account="other-runner")
    assert changed.created
    assert [r["service_account"] for r in kfp_api.recurring.values()] == ["other-runner"]


def test_schedule_with_the_typed_run_form(kfp_api, tmp_path) -> None:
    """The recurring run's parameters are the typed form (what the UI shows), checked here
    first; every tick ends its window at its scheduled time."""
    from autokfp.edge.scheduling import MONITORING_FORM

    form = {"model_name": "churn-form", "dataset": "s3://lake/churn/customers.parquet",
            "target": "churned", "window_days": 3.0, "engines": "h2o"}
    result = schedule_monitoring(form=form, host=kfp_api.url, cron="0 0 */6 * * *")
    assert result.created and result.name == "churn-form-drift-monitoring"
    (run,) = kfp_api.recurring.values()
    assert run["runtime_config"]["parameters"] == {**form, "config": {},
                                                   "window_end": "scheduled"}
    assert "{{$.pipeline_job_schedule_time_utc}}" in json.dumps(kfp_api.uploads[-1])
    # the form is the uploaded pipeline's own: its parameters but config and window_end
    assert set(kfp_api.uploads[-1]["root"]["inputDefinitions"]["parameters"]) == {
        *MONITORING_FORM, "config", "window_end"}
    # a bad value or an unknown parameter: refused before anything is sent
    calls = len(kfp_api.calls)
    with pytest.raises(ConfigError, match="window_days"):
        schedule_monitoring(form={**form, "window_days": -3.0}, host=kfp_api.url)
    with pytest.raises(ConfigError, match="no parameter windw_days"):
        schedule_monitoring(form={**form, "windw_days": 3}, host=kfp_api.url)
    with pytest.raises(ConfigError, match="pods cannot read"):
        schedule_monitoring(form={**form, "dataset": str(tmp_path / "customers.parquet")},
                            host=kfp_api.url)
    assert len(kfp_api.calls) == calls


def test_schedule_without_a_host_says_to_pass_one_at_once(tmp_path, monkeypatch):
    from autokfp.edge.cli import app

    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path).to_dict()))
    result = CliRunner().invoke(app, ["schedule", str(path)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert message.startswith("error: no Kubeflow Pipelines host: pass --host"), message
    assert "KF_PIPELINES_ENDPOINT" in message and "--dry-run" in message
    assert "localhost" not in message  # no attempt at kfp.Client's default endpoint


def test_schedule_dry_run_prints_the_recurring_run_that_schedule_then_creates(kfp_api,
                                                                              tmp_path,
                                                                              monkeypatch):
    from autokfp.edge.cli import app

    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    path = tmp_path / "run.yaml"
    config = _config(tmp_path)
    path.write_text(yaml.safe_dump(config.to_dict()))
    args = ["schedule", str(path), "--cron", "0 0 * * * *", "--service-account", "runner"]
    dry = CliRunner().invoke(app, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    spec = json.loads(dry.stdout)
    assert kfp_api.calls == []  # nothing sent anywhere
    text = CliRunner().invoke(app, [*args, "--dry-run"])
    assert text.exit_code == 0 and text.stdout.startswith("# autokfp schedule --dry-run")
    assert yaml.safe_load(text.stdout) == spec

    created = CliRunner().invoke(app, [*args, "--host", kfp_api.url])
    assert created.exit_code == 0, created.output
    (run,) = kfp_api.recurring.values()
    planned = spec["recurring_run"]
    assert run["display_name"] == planned["job_name"] == "churn-test-drift-monitoring"
    assert run["description"] == planned["description"]
    assert run["trigger"]["cron_schedule"]["cron"] == planned["cron_expression"] == "0 0 * * * *"
    assert int(run["max_concurrency"]) == planned["max_concurrency"] == 1
    assert run["no_catchup"] is planned["no_catchup"] is True
    assert run["service_account"] == planned["service_account"] == "runner"
    assert run["runtime_config"]["parameters"] == planned["params"]
    assert planned["params"] == {"config": config.to_dict(), "window_end": "scheduled"}
    (version,) = [v for v in kfp_api.versions.values()
                  if v.get("display_name") == spec["pipeline_version"]]
    assert run["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]


def test_schedule_dry_run_checks_the_config_as_schedule_does(tmp_path, monkeypatch):
    from autokfp.edge.cli import app

    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(small_config(tmp_path).to_dict()))  # a local folder
    result = CliRunner().invoke(app, ["schedule", str(path), "--dry-run"])
    assert result.exit_code == 2, result.output
    assert "is on this machine" in " ".join(result.output.split())


def test_allowed_local_paths_are_each_warned_about_once(tmp_path):
    """The CLI prints each path it sends as is once ("warning: ..."), not a second time as a
    log line of the scheduling module (a new user's trial saw every warning twice)."""
    import os
    import subprocess
    import sys

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(small_config(tmp_path).to_dict()))  # a local folder
    done = subprocess.run(
        [sys.executable, "-c", "from autokfp.edge.cli import app; app()", "schedule", str(path),
         "--dry-run", "--allow-local-paths"],
        capture_output=True, text=True, timeout=300, check=False,
        env={k: v for k, v in os.environ.items() if k != "KF_PIPELINES_ENDPOINT"})
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("is on this machine") == 1, done.stderr
    assert "warning: sources 'files': folder" in " ".join(done.stderr.split()), done.stderr
    assert done.stdout.startswith("# autokfp schedule --dry-run")
    # the version a new process names is this process's compile's: the same spec, byte for
    # byte, in another interpreter (another str hash seed), as scheduling again needs
    from autokfp.edge import scheduling

    digest = scheduling.compile_pipeline(scheduling.PIPELINE_NAME, tmp_path / "here.yaml")
    assert yaml.safe_load(done.stdout)["pipeline_version"].endswith(f"-{digest[:12]}"), \
        done.stdout
