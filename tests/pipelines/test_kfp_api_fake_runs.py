"""The KFP API fake behaves like the real API for runs (what the notebook test relies on).

Through kfp.Client, as a user would: a submitted run goes PENDING -> RUNNING -> SUCCEEDED or
FAILED with its state history; its tasks see the API's run id as the job id and its
scheduled time; a failed run
carries the failing task in its error; parameters are checked at creation as the API server
does (a missing one, a wrong type, one the pipeline does not declare: 400); an unknown run
is a 404.
"""

# no `from __future__ import annotations`: kfp reads the components' annotations as types
from datetime import datetime
from pathlib import Path

import kfp
import kfp_server_api
import pytest
from kfp import compiler, dsl


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def record_job_id(job_id: str, scheduled: str, path: str, times: int) -> None:
    """Write the job id the task was given, ``times`` times, and the scheduled time."""
    with open(path, "w") as handle:
        handle.write(job_id * times + " " + scheduled)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def refuse(reason: str) -> None:
    """Fail with ``reason``."""
    raise ValueError(reason)


@dsl.pipeline(name="fake-api-records")
def records(path: str, times: int = 1) -> None:
    record_job_id(job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                  scheduled=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER, path=path, times=times)


@dsl.pipeline(name="fake-api-fails")
def fails(reason: str = "the data is not there") -> None:
    refuse(reason=reason)


@pytest.fixture()
def client(kfp_api, tmp_path) -> kfp.Client:
    kfp_api.execute_runs = True
    kfp_api.pipeline_root = str(tmp_path / "pipeline-root")
    return kfp.Client(host=kfp_api.url)


def _package(pipeline, tmp_path: Path) -> str:
    path = tmp_path / f"{pipeline.name}.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return str(path)


def test_a_run_runs_and_its_tasks_see_the_api_run_id(client, kfp_api, tmp_path) -> None:
    written = tmp_path / "job-id.txt"
    run = client.create_run_from_pipeline_package(
        _package(records, tmp_path), arguments={"path": str(written), "times": 2},
        experiment_name="fake-checks")
    assert client.get_run(run.run_id).state in ("PENDING", "RUNNING")
    finished = client.wait_for_run_completion(run.run_id, timeout=300, sleep_duration=1)
    assert finished.state == "SUCCEEDED" and finished.error is None
    assert [s.state for s in finished.state_history] == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert finished.finished_at >= finished.created_at
    job_id, scheduled = written.read_text().split(" ")
    assert job_id == run.run_id * 2
    assert datetime.fromisoformat(scheduled.replace("Z", "+00:00")) == finished.scheduled_at


def test_a_failed_run_names_the_failing_task(client, tmp_path) -> None:
    run = client.create_run_from_pipeline_package(_package(fails, tmp_path), arguments={},
                                                  experiment_name="fake-checks")
    finished = client.wait_for_run_completion(run.run_id, timeout=300, sleep_duration=1)
    assert finished.state == "FAILED"
    assert [s.state for s in finished.state_history] == ["PENDING", "RUNNING", "FAILED"]
    assert "Inner task failed: 'refuse'" in finished.error.message
    assert "\x1b[" not in finished.error.message  # plain text, as the API returns it


@pytest.mark.parametrize("arguments, message", [
    ({}, "parameter path is not optional, yet has neither default value nor user provided value"),
    ({"path": "/tmp/x", "times": "two"}, "input parameter times requires type integer"),
    ({"path": "/tmp/x", "times": True}, "input parameter times requires type integer"),
    ({"path": 3}, "input parameter path requires type string"),
    ({"path": "/tmp/x", "budget": 5}, "parameter(s) provided are not required by pipeline: budget"),
])
def test_bad_parameters_are_refused_at_creation(client, kfp_api, tmp_path, arguments,
                                                message) -> None:
    with pytest.raises(kfp_server_api.ApiException) as refused:
        client.create_run_from_pipeline_package(_package(records, tmp_path), arguments=arguments,
                                                experiment_name="fake-checks")
    assert refused.value.status == 400 and message in refused.value.body
    assert kfp_api.runs == {}


def test_an_unknown_run_is_not_found(client) -> None:
    with pytest.raises(kfp_server_api.ApiException) as missing:
        client.get_run("no-such-run")
    assert missing.value.status == 404 and "Run no-such-run not found" in missing.value.body
