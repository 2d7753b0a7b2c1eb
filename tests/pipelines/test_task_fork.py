"""kfp.local tasks forked from the warm worker (autokfp.edge.taskfork) keep kfp.local's
semantics: each task its own process, nothing one task changes seen by the next, a failing
task fails the run with its own error, a killed runner leaves no process behind.

Each test starts one worker (it imports pandas, MLflow, scikit-learn...: 3-15 s here).
"""

# no `from __future__ import annotations`: kfp reads the components' annotations
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Artifact, Input, Output

from autokfp.edge import taskfork
from autokfp.lifeline import RUNNER_ENV

ROOT = Path(__file__).resolve().parents[2]


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def first(marker: Output[Artifact]) -> str:
    import atexit
    import json
    import os

    import numpy as np
    import pandas as pd

    pd.options.display.max_rows = 7  # a module's state changed in this task only
    # the process ends as an interpreter does: its exit handlers run
    atexit.register(lambda: open(os.environ["QPERF_AT_EXIT"], "w").write("ran"))
    with open(marker.path, "w") as handle:
        handle.write("written by first")
    return json.dumps({"pid": os.getpid(), "ppid": os.getppid(),
                       "runner": os.environ.get("AUTOKFP_RUNNER_PID"),
                       "random": float(np.random.rand())})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def second(marker: Input[Artifact], before: str) -> str:
    import json
    import os

    import numpy as np
    import pandas as pd

    with open(marker.path) as handle:
        text = handle.read()
    return json.dumps({"pid": os.getpid(), "max_rows": pd.options.display.max_rows,
                       "marker": text, "before": json.loads(before),
                       "random": float(np.random.rand())})


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def broken(before: str) -> None:
    raise ValueError(f"this task fails on purpose after {len(before)} characters")


@dsl.pipeline
def two_tasks() -> str:
    made = first()
    return second(marker=made.outputs["marker"], before=made.outputs["Output"]).output


@dsl.pipeline
def failing() -> None:
    broken(before=first().outputs["Output"])


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNNER_ENV, str(os.getpid()))
    monkeypatch.setenv("QPERF_AT_EXIT", str(tmp_path / "at-exit"))
    monkeypatch.delenv(taskfork.SWITCH_ENV, raising=False)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(tmp_path / "root"), raise_on_error=True)


def test_forked_tasks_are_isolated_processes_and_a_failure_fails_the_run(runner, tmp_path,
                                                                        capsys):
    import json

    with taskfork.forked_tasks() as worker:
        assert worker is not None
        assert worker.ready(wait=120)  # until then tasks run as kfp.local runs them
        result = json.loads(two_tasks().output)
        assert worker.forked == 2
        worker_pid = worker._process.pid
        before = result["before"]
        # each task its own process, a child of the worker, which it watches (lifeline)
        assert before["pid"] != result["pid"] != worker_pid
        assert before["ppid"] == worker_pid and before["runner"] == str(worker_pid)
        # what the first task changed in a preloaded module is not in the second
        assert result["max_rows"] == 60 and result["marker"] == "written by first"
        # numpy's global generator is seeded in each task, not copied from the worker
        assert before["random"] != result["random"]
        assert (tmp_path / "at-exit").read_text() == "ran"
        capsys.readouterr()
        with pytest.raises(RuntimeError, match="Inner task failed"):
            failing()
        assert worker.forked == 4
    printed = capsys.readouterr().out
    assert "ValueError: this task fails on purpose after" in printed
    # the traceback is the task's, as a new interpreter prints it
    trace = printed[printed.index("Traceback"):]
    assert "executor_main.py" in trace.splitlines()[1] and "taskfork" not in trace
    assert worker._process is None  # stopped when the run ended


def test_a_task_that_comes_before_the_worker_is_ready_runs_as_kfp_local_runs_it(
        runner, tmp_path, monkeypatch):
    """The first tasks do not wait for the worker's imports (a module here whose import
    keeps it busy until the tasks have run: a file, not a 20 s sleep that a loaded machine's
    two new interpreters could outlast); once it is ready, it runs the tasks."""
    import json

    release = tmp_path / "release-preload"
    (tmp_path / "slow_preload.py").write_text(
        f"import os, time\ndeadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        f"    time.sleep(0.05)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with taskfork.forked_tasks(first=("slow_preload",)) as worker:
        assert worker is not None
        result = json.loads(two_tasks().output)
        worker_pid = worker._process.pid
        assert not worker.ready(wait=0)  # still importing while both tasks ran
        assert result["before"]["ppid"] != worker_pid  # the first task was not forked
        assert result["marker"] == "written by first"
        release.write_text("")
        assert worker.ready(wait=120)
        forked = worker.forked
        again = json.loads(two_tasks().output)
        assert worker.forked == forked + 2 and again["before"]["ppid"] == worker_pid


def test_the_worker_takes_tasks_before_its_later_imports(runner, tmp_path, monkeypatch):
    """Once it has imported what the first tasks need, the worker takes tasks and imports the
    rest one module at a time while no task waits (here, after MLflow and the others, a
    module whose import lasts until the tasks have run: a file, was a 12 s sleep): tasks are
    forked meanwhile, and the imports go on."""
    import json

    done, release = tmp_path / "later-imported", tmp_path / "release-later"
    (tmp_path / "slow_later.py").write_text(
        f"import os, time\ndeadline = time.monotonic() + 300\n"
        f"while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:\n"
        f"    time.sleep(0.05)\n"
        f"open({str(done)!r}, 'w').write('done')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with taskfork.forked_tasks(preload=("slow_later",)) as worker:
        assert worker is not None
        assert worker.ready(wait=120)
        assert not done.exists()  # ready before its later import ended
        result = json.loads(two_tasks().output)
        assert not done.exists()  # both tasks forked while it still imported
        assert worker.forked == 2 and result["before"]["ppid"] == worker._process.pid
        release.write_text("")
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done.exists()  # the worker went on with its later imports


def test_tasks_it_cannot_run_as_kfp_local_would_go_to_kfp_local(runner, monkeypatch):
    worker = taskfork.TaskWorker()
    script = taskfork._lightweight_script()
    assert script is not None
    command = ["sh", "-ec", script.replace("python3", sys.executable), "source", "--x"]
    assert worker.accepts(command, dict(os.environ))
    # a variable set for the task only (a library may read it at import)
    assert not worker.accepts(command, {**os.environ, "OMP_NUM_THREADS": "1"})
    # another command shape (pip installs first, a container component)
    assert not worker.accepts(["sh", "-c", "pip install x && python3 -m y"], dict(os.environ))
    worker.close()
    monkeypatch.setenv(taskfork.SWITCH_ENV, "0")
    with taskfork.forked_tasks() as off:
        assert off is None


RUNNER = """
import os, sys
from kfp import dsl, local
from kfp.dsl import Artifact, Input, Output
from autokfp.edge.taskfork import forked_tasks

@dsl.component(base_image="python:3.11", install_kfp_package=False)
def sleeper():
    import os, time
    from autokfp.lifeline import watch_runner
    import autokfp.steps  # what every autokfp component imports first: it starts the watch
    if not watch_runner():  # a second call: started already
        open(os.environ["QPERF_WATCHING"], "w").close()
    time.sleep(600)

@dsl.pipeline
def sleeping():
    sleeper()

os.environ["AUTOKFP_RUNNER_PID"] = str(os.getpid())
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[1])
with forked_tasks() as worker:
    worker.ready(wait=120)  # until then tasks run as kfp.local runs them
    sleeping()
"""


def _tagged(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"QPERF_TAG={tag}".encode() in (entry / "environ").read_bytes() and \
                        (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_killing_the_runner_stops_the_worker_and_its_tasks(tmp_path):
    tag = uuid.uuid4().hex
    watching = tmp_path / "watching"
    # the worker's socket folder goes under TMPDIR: here, to be checked
    env = {**os.environ, "QPERF_TAG": tag, "QPERF_WATCHING": str(watching),
           "TMPDIR": str(tmp_path)}
    env.pop(taskfork.SWITCH_ENV, None)
    script = tmp_path / "runner.py"  # kfp reads a component's source from its file
    script.write_text(RUNNER)
    runner = subprocess.Popen([sys.executable, str(script), str(tmp_path / "root")],
                              cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not watching.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert watching.exists(), "the task did not come up watching its parent"
        assert len(_tagged(tag)) == 3  # runner, worker, task
        runner.send_signal(signal.SIGKILL)
        runner.wait()
        deadline = time.monotonic() + 10
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _tagged(tag) == []
        assert not list(tmp_path.glob("autokfp-worker-*"))  # nor its socket folder
    finally:
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)
        if runner.poll() is None:
            runner.kill()


def test_tensorflow_is_preloaded_for_package_tasks_of_runs_with_autokeras():
    config = '{"inputs": {"parameterValues": {"config": {"engines": {"%s": {}}}}}}'
    keras_run = ["--executor_input", config % "autokeras", "--function_to_execute"]
    assert taskfork.preload_for([*keras_run, "select_model"]) == ["tensorflow", "keras"]
    assert taskfork.preload_for([*keras_run, "deploy_model"]) == ["tensorflow", "keras"]
    assert taskfork.preload_for([*keras_run, "profile"]) == []  # loads no model package
    # training and the refit: their engine child is forked from the task, TensorFlow in it
    assert taskfork.preload_for([*keras_run, "train_model"]) == ["tensorflow", "keras"]
    assert taskfork.preload_for([*keras_run, "refit_model"]) == ["tensorflow", "keras"]
    h2o_run = ["--executor_input", config % "h2o", "--function_to_execute", "select_model"]
    assert taskfork.preload_for(h2o_run) == []
    assert taskfork.preload_for(["--function_to_execute"]) == []


def test_every_package_task_is_a_component():
    """PACKAGE_TASKS names components by hand (whether a step loads a model package is in
    its code, not in its signature: deploy_model takes none, register_model takes one and
    never loads it); a renamed component must not silently lose the preload."""
    from autokfp.components import ALL_COMPONENTS

    names = {component.python_func.__name__ for component in ALL_COMPONENTS}
    assert taskfork.TENSORFLOW_TASKS <= names, sorted(taskfork.TENSORFLOW_TASKS - names)
    assert taskfork.TENSORFLOW_AFTER in names  # the gate of TensorFlow's early import


def test_the_warm_predictor_starts_once_as_the_first_task_after_training_starts(monkeypatch):
    """``autokfp.edge.local`` starts the run's warm predictor process (the serving stack's
    imports) and the command's own registry imports when the engines are done, never beside
    a search: at the first task that loads model packages, once."""
    from kfp.local import subprocess_task_handler as handler

    from autokfp.edge import local as local_runner

    ran: list[str] = []
    monkeypatch.setattr(handler, "run_local_subprocess",
                        lambda full_command, env_vars=None: ran.append(full_command[-1]) or 0)
    started: list[str] = []
    imported: list[int] = []
    with local_runner._after_training([lambda: started.append(ran[-1] if ran else "")],
                                      lambda: imported.append(len(ran))):
        for function in ("discover", "train_model", "train_model", "select_model",
                         "bias_check", "deploy_model"):
            handler.run_local_subprocess(["sh", "-ec", "...", "--function_to_execute", function])
            assert started == ([] if function in ("discover", "train_model") else ["train_model"])
    assert imported == [3]  # the command's registry imports: once, at the same moment
    assert ran == ["discover", "train_model", "train_model", "select_model", "bias_check",
                   "deploy_model"]


def test_the_refit_cluster_is_stopped_once_as_the_first_task_after_the_refit_starts(monkeypatch):
    """``autokfp.edge.local`` stops the refit's warm H2O cluster once the refit step is over
    (the first task that takes its output: explain-model), in a thread beside that task,
    not at the command's end; leaving the hook waits for the stop to finish."""
    from kfp.local import subprocess_task_handler as handler

    from autokfp.edge import local as local_runner

    ran: list[str] = []
    monkeypatch.setattr(handler, "run_local_subprocess",
                        lambda full_command, env_vars=None: ran.append(full_command[-1]) or 0)
    stopping = threading.Event()
    calls: list[str] = []

    def stop() -> None:  # a shutdown that takes a while
        calls.append("called")
        stopping.set()
        time.sleep(0.3)
        calls.append("done")

    with local_runner._after_refit([stop]):
        for function in ("select_model", "bias_check", "evaluate_model", "refit_model"):
            handler.run_local_subprocess(["sh", "-ec", "...", "--function_to_execute", function])
        assert not stopping.is_set()
        handler.run_local_subprocess(["sh", "-ec", "...", "--function_to_execute",
                                      "explain_model"])
        assert stopping.wait(10)  # called as explain-model started
        for function in ("register_model", "deploy_model"):
            handler.run_local_subprocess(["sh", "-ec", "...", "--function_to_execute", function])
    assert calls == ["called", "done"]  # once, and finished when the hook was left
    assert ran == ["select_model", "bias_check", "evaluate_model", "refit_model",
                   "explain_model", "register_model", "deploy_model"]


def test_only_a_run_that_serves_locally_gets_a_warm_predictor(monkeypatch):
    """The runner names (and later starts) a warm predictor process only for a run whose
    deploy step may start a local predictor: a manifest or kubernetes target never asks it
    for one. ``auto`` resolves as the deploy step resolves it."""
    from autokfp.config.serving import resolve_target
    from autokfp.edge.local import serves_locally

    monkeypatch.delenv("AUTOKFP_DEPLOY_TARGET", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def run(target: str | None) -> dict:
        return {"config": {"name": "churn", "deploy": {} if target is None else
                           {"target": target}}}

    assert serves_locally(run("local")) and serves_locally(run("auto"))
    assert serves_locally(run(None)) and serves_locally({"config": {}})  # a run form's run
    assert not serves_locally(run("manifest")) and not serves_locally(run("kubernetes"))
    monkeypatch.setenv("AUTOKFP_DEPLOY_TARGET", "manifest")
    assert not serves_locally(run("auto")) and serves_locally(run("local"))
    monkeypatch.delenv("AUTOKFP_DEPLOY_TARGET")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert not serves_locally(run("auto")) and resolve_target("auto") == "kubernetes"


@pytest.mark.parametrize("pipeline, engine", [("autonomous-training", "h2o"),
                                              ("autonomous-training", "autokeras"),
                                              ("batch-scoring", "h2o")])
def test_a_training_run_starts_the_refit_cluster_once_an_h2o_model_is_chosen(
        monkeypatch, tmp_path, pipeline, engine):
    """A training run that may refit an H2O model names the warm refit cluster's state file
    in every task's environment and starts its process as the first task that takes
    select-model's package (the bias check) starts, when that package is H2O's
    (``h2o_refit_cluster``); for an AutoKeras champion it starts none, and another pipeline
    names none."""
    import json

    from kfp.local import subprocess_task_handler as handler

    from autokfp.edge import local as local_runner
    from autokfp.training import h2o_refit_cluster

    for switch in ("AUTOKFP_LOCAL_FORK", "AUTOKFP_MOJO_SCORER", "AUTOKFP_WARM_PREDICTOR"):
        monkeypatch.setenv(switch, "0")  # no process of theirs: only the refit cluster here
    monkeypatch.delenv(h2o_refit_cluster.REFIT_CLUSTER_ENV, raising=False)
    chosen = tmp_path / "root" / "run-1" / "select-model" / "model"
    (chosen / "artifacts").mkdir(parents=True)
    (chosen / "artifacts" / "meta.json").write_text(json.dumps({"engine": engine}))
    seen: list[tuple[str, str | None]] = []
    monkeypatch.setattr(handler, "run_local_subprocess", lambda full_command, env_vars=None: (
        seen.append((full_command[-1], os.environ.get(h2o_refit_cluster.REFIT_CLUSTER_ENV)))
        or 0))
    started: list[str] = []
    monkeypatch.setattr(h2o_refit_cluster.RefitCluster, "start",
                        lambda self: started.append(seen[-1][0] if seen else ""))
    stopped = threading.Event()  # the cluster stopped once the refit is over (explain-model)
    real_close = h2o_refit_cluster.RefitCluster.close
    monkeypatch.setattr(h2o_refit_cluster.RefitCluster, "close",
                        lambda self: (stopped.set(), real_close(self))[-1])
    functions = ("discover", "train_model", "train_model", "select_model", "bias_check",
                 "evaluate_model", "refit_model", "explain_model")
    # the executor input kfp.local passes: select-model's package among a task's inputs
    inputs = {"bias_check", "evaluate_model", "refit_model"}

    def build():
        def run(**_arguments):
            for function in functions:
                executor_input = json.dumps({"inputs": {"artifacts": {"model": {"artifacts": [
                    {"uri": str(chosen)}]}}}} if function in inputs else {}, indent=2)
                assert not stopped.is_set()  # not before the refit step is over
                handler.run_local_subprocess(["sh", "-ec", "...", "--executor_input",
                                              executor_input, "--function_to_execute",
                                              function])
            if pipeline == "autonomous-training":
                assert stopped.wait(10)  # during the run, as explain-model started
        return run

    config = {"name": "churn", "sources": [{"name": "files", "kind": "folder",
                                            "path": str(tmp_path)}],
              "training": {"dataset": "files/rows.csv", "target": "y"}}
    local_runner._run_pipeline(pipeline, {"config": config}, None, None, None, build=build)
    assert [function for function, _ in seen] == list(functions)
    named = {state for _, state in seen}
    assert h2o_refit_cluster.REFIT_CLUSTER_ENV not in os.environ  # put back after the run
    if pipeline == "batch-scoring":
        assert named == {None} and started == []
        return
    assert len(named) == 1 and None not in named  # every task sees the same state file
    # once, as the bias check (the first task given select-model's package) starts
    assert started == (["select_model"] if engine == "h2o" else [])
    assert not Path(named.pop()).parent.exists()  # its folder removed with the run


def test_a_training_run_preloads_evidently_first_and_tensorflow_last(monkeypatch):
    """The training pipeline's worker imports Evidently before MLflow and the rest (the
    profile step, the third task, forks Evidently's child from its task) and, with AutoKeras
    among the engines, TensorFlow and Keras after everything else (while the steps before
    training run, not when AutoKeras's training task comes); other pipelines and runs
    without AutoKeras are as before."""
    both = {"config": {"engines": {"autokeras": {}, "h2o": {}}}}
    assert taskfork.preload_for_run(both, "autonomous-training") == (
        *taskfork.EVIDENTLY, "h2o", "tensorflow@profile", "keras@profile")
    assert taskfork.preload_for_run({"config": {"engines": {"h2o": {}}}},
                                    "autonomous-training") == (*taskfork.EVIDENTLY, "h2o")
    assert taskfork.preload_for_run(both, "batch-scoring") == ("h2o",)
    assert taskfork.preload_for_run(both) == ("h2o",)  # a pipeline not named: as before

    seen: dict[str, object] = {}
    monkeypatch.setattr(taskfork, "_preload", lambda names: seen.setdefault("first", names))
    monkeypatch.setattr(taskfork, "_serve",
                        lambda address, pid, later: seen.setdefault("later", later) and None)
    # what main sets for the worker's process, put back for this one
    monkeypatch.setattr(taskfork, "_worker_pid", taskfork._worker_pid)
    monkeypatch.setattr(taskfork, "_task_signals", {})
    names = taskfork.preload_for_run(both, "autonomous-training")
    handler = signal.getsignal(signal.SIGINT)
    try:
        assert taskfork.main(["socket", "1", "+extra_first", *names]) == 0
    finally:
        signal.signal(signal.SIGINT, handler)
    assert seen["first"] == (*taskfork.PRELOAD_FIRST, "extra_first")
    later = list(seen["later"])  # type: ignore[call-overload]
    assert later[:len(taskfork.EVIDENTLY)] == list(taskfork.EVIDENTLY)
    assert later[-3:] == ["h2o", "tensorflow@profile", "keras@profile"]
    assert sorted(later) == sorted(set(taskfork.PRELOAD_LATER) | set(names))  # each once
    assert later.index("evidently") < later.index("mlflow")


def test_a_gated_later_import_waits_for_its_task_to_be_forked(runner, tmp_path, monkeypatch):
    """MODULE@FUNCTION is imported only once a task running FUNCTION was forked (TensorFlow
    waits for the profile step: it imports while that step runs, not when a step comes).
    Here the worker's later imports are a module gated on the pipeline's second task
    (second_marking), which waits up to 60 s for that task's marker and records whether it
    came, then a plain module; the first task waits for the plain one's import. Gated, the
    worker imports the plain module while the first task runs, then the gated one once the
    second is forked: True. Not gated, it would sit in the gated module, the first task would
    wait for the plain one and the second never come: False (or no record)."""
    import json

    record, gated_done = tmp_path / "gated-record", tmp_path / "gated-done"
    marker, plain = tmp_path / "second-started", tmp_path / "plain-imported"
    (tmp_path / "gated_later.py").write_text(
        f"import os, time\ndeadline = time.monotonic() + 60\n"
        f"while not os.path.exists({str(marker)!r}) and time.monotonic() < deadline:\n"
        f"    time.sleep(0.05)\n"
        f"open({str(record)!r}, 'w').write(str(os.path.exists({str(marker)!r})))\n"
        f"open({str(gated_done)!r}, 'w').write('done')\n")
    (tmp_path / "plain_later.py").write_text(f"open({str(plain)!r}, 'w').write('done')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("QPERF_SECOND_MARKER", str(marker))
    monkeypatch.setenv("QPERF_PLAIN_MARKER", str(plain))
    assert taskfork._next_import(["a@second", "b"], set()) == 1
    assert taskfork._next_import(["a@second"], {"first"}) is None
    assert taskfork._next_import(["a@second", "b"], {"second"}) == 0
    with taskfork.forked_tasks(preload=("gated_later@second_marking", "plain_later")) as worker:
        assert worker is not None and worker.ready(wait=120)
        result = json.loads(marked_tasks().output)
        assert worker.forked == 2 and result == {"plain": True}
        deadline = time.monotonic() + 120
        while not gated_done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert record.read_text() == "True"  # imported after the second task was forked


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def first_waiting() -> str:
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(os.environ["QPERF_PLAIN_MARKER"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return str(os.path.exists(os.environ["QPERF_PLAIN_MARKER"]))


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def second_marking(plain: str) -> str:
    import json
    import os

    with open(os.environ["QPERF_SECOND_MARKER"], "w") as handle:
        handle.write("started")
    return json.dumps({"plain": plain == "True"})


@dsl.pipeline
def marked_tasks() -> str:
    return second_marking(plain=first_waiting().output).output
