"""Fault injection: ``kill -9`` of the real ``register_model`` step at its writes.

The step runs in its own process (``killed_step.py``, forked from a warm worker:
``step_worker.py``) on a real home (MLflow on SQLite, the
artifact store, the audit trail, the catalog) that already holds a champion, and kills
itself with SIGKILL just before one of its writes of stored state: while the model folder
is half copied into the artifact store, between the registry's tags, between the two alias
moves, before the audit event, with the step's output or the catalog's file written but not
yet renamed into place, before the trail's anchor. A first run counts the writes and picks
the points by what they write, so the points follow the code.

After each kill nothing stored is lost or half-written: the registry opens; the champion is
a version whose stored model is whole (the files match its package hash); every other
version is whole or listed as incomplete; every JSON file in the home parses; the audit
trail verifies. Then the step is run again, as KFP's retry does, and it recovers: the
candidate is the champion, complete and whole, the one it replaced is ``previous``, and the
trail holds exactly one ``model.registered`` event for it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults import StepWorker, step_home

pytestmark = pytest.mark.slow  # 11 kills and reruns, each a process of its own: minutes

NAME = "churn-test"  # the trained package's config


@dataclass
class Stage:
    root: Path
    home: Path
    env: dict[str, str]
    config: dict
    model: Path
    schema: Path
    worker: StepWorker


@pytest.fixture(scope="module")
def stage(trained_package, tmp_path_factory):

    root = tmp_path_factory.mktemp("killed-step")
    home = root / "home"
    with step_home(root) as env:  # this process reads the same home to check it
        worker = StepWorker(env, ["autokfp.steps.register_model"])
        try:
            yield Stage(root, home, env, trained_package.config.to_dict(),
                        Path(trained_package.paths.model), Path(trained_package.paths.schema),
                        worker)
        finally:
            worker.close()


def _candidate(stage: Stage, n: int) -> Path:
    """The trained package with one file of its own: a new package hash, a new version."""
    package = stage.root / f"candidate-{n}"
    if not package.exists():
        shutil.copytree(stage.model, package)
        (package / "candidate.txt").write_text(f"{n}\n")
    return package


def _run(stage: Stage, n: int, champion: str | None, kill_at: int = 0
         ) -> tuple[int, list[tuple[str, str]]]:
    """The step for candidate ``n`` (which beat champion ``champion``), killed before write
    ``kill_at``; its exit code and the write points it reached."""
    evaluation = stage.root / f"evaluation-{n}.json"
    evaluation.write_text(json.dumps({
        "metrics": {"auc": 0.8 + n / 1000},
        "comparison": {"metric": "auc", "promote": True, "champion_version": champion,
                       "champion": None if champion is None else 0.8,
                       "reason": "first model" if champion is None else "beats the champion"}}))
    events = stage.root / f"events-{n}-{kill_at}.txt"
    spec = stage.root / f"spec-{n}-{kill_at}.json"
    spec.write_text(json.dumps({
        "kill_at": kill_at, "roots": [str(stage.home), str(stage.root / "out")],
        "events": str(events), "config": stage.config, "model_path": str(_candidate(stage, n)),
        "evaluation_path": str(evaluation), "schema_path": str(stage.schema),
        "registration_path": str(stage.root / "out" / f"registration-{n}.json")}))
    done = stage.worker.run(spec, timeout=600)
    if kill_at == 0:
        assert done.returncode == 0, done.stderr[-3000:]
    points = [tuple(line.split("\t")[1:3]) for line in events.read_text().splitlines()
              if "\t" in line]
    return done.returncode, points  # type: ignore[return-value]


def _package_hash_of(client, name: str, version: str, scratch: Path) -> str:
    import mlflow

    from autokfp.modeling import registry

    uri = client.get_model_version_download_uri(name, version)
    target = scratch / f"v{version}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return registry.package_hash(mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                                       dst_path=str(target)))


def _assert_nothing_lost_or_half_written(stage: Stage, scratch: Path) -> str:
    """The stored state after a kill; returns the champion's version."""
    from autokfp.governance import audit
    from autokfp.modeling import registry

    client = registry.configure()
    (model,) = [m for m in registry.list_models() if m["name"] == NAME]  # the registry opens
    champion = client.get_model_version_by_alias(NAME, registry.CHAMPION)
    digest = champion.tags[registry.PACKAGE_HASH_TAG]
    assert _package_hash_of(client, NAME, champion.version, scratch) == digest, \
        "the champion's stored model is not whole"
    for version in model["versions"]:
        if version["state"] == "complete":
            stored = client.get_model_version(NAME, version["version"])
            assert _package_hash_of(client, NAME, version["version"], scratch) == \
                stored.tags[registry.PACKAGE_HASH_TAG], f"v{version['version']} is not whole"
    for path in stage.home.rglob("*.json"):
        if not path.name.startswith("."):  # temp files of an atomic write are not the file
            json.loads(path.read_text())
    verification = audit.verify_trail()
    assert verification.ok, verification.problems
    return str(champion.version)


def _assert_recovered(stage: Stage, n: int, replaced: str, scratch: Path) -> None:
    from autokfp.governance import audit
    from autokfp.modeling import registry

    client = registry.configure()
    champion = client.get_model_version_by_alias(NAME, registry.CHAMPION)
    assert champion.tags[registry.PACKAGE_HASH_TAG] == registry.package_hash(_candidate(stage, n))
    assert champion.tags[registry.STATE_TAG] == registry.COMPLETE
    assert _package_hash_of(client, NAME, champion.version, scratch) == \
        registry.package_hash(_candidate(stage, n))
    assert str(client.get_model_version_by_alias(NAME, registry.PREVIOUS).version) == replaced
    versions = [v for v in registry.list_models()[0]["versions"]]
    assert all(v["state"] == "complete" for v in versions), versions
    registered = audit.events_for(NAME, champion.version, kind="model.registered")
    assert len(registered) == 1, registered
    assert audit.verify_trail().ok
    output = json.loads((stage.root / "out" / f"registration-{n}.json").read_text())
    assert output["version"] == str(champion.version) and output["promoted"] is True


def _nth(kind: str, n: int = 1, target: str = "") -> Callable[[list], int]:
    def find(points: list[tuple[str, str]]) -> int:
        hits = [i for i, (k, t) in enumerate(points, start=1) if k == kind and target in t]
        return hits[n - 1]
    return find


def _after_last_alias(points: list[tuple[str, str]]) -> int:
    return _last_alias(points) + 1


def _last_alias(points: list[tuple[str, str]]) -> int:
    return [i for i, (k, _) in enumerate(points, start=1)
            if k == "registry.set_registered_model_alias"][-1]


# where to kill, found in the counted writes of a full run
KILL_POINTS: dict[str, Callable[[list], int]] = {
    "the run is being created": _nth("tracking.create_run"),
    "the model folder is half copied": _nth("shutil.copyfile", target="model.zip"),
    "an artifact written, not renamed into place": _nth("os.rename", target="evaluation.json"),
    "the run is logged, no version yet": _nth("registry.create_model_version"),
    "the version's tags half written": _nth("registry.set_model_version_tag", 3),
    "previous moved, champion not yet": _nth("registry.set_registered_model_alias", 2),
    "champion moved, the version not yet complete": _after_last_alias,
    "registered, no audit event yet": _nth("open-for-write", target="events.jsonl"),
    "the step's output not renamed into place": _nth("os.rename", target="/out/registration-"),
    "the catalog's file not renamed into place": _nth("os.rename", target="/catalog/metadata/"),
    "the trail's anchor not yet moved": _nth("tracking.set_experiment_tag"),
}


def test_kill_9_of_the_register_step_loses_nothing_and_a_rerun_recovers(stage, tmp_path):
    _run(stage, 1, None)  # the first champion
    _, counted = _run(stage, 2, "1")  # a full run of a challenger that wins: the writes
    assert _assert_nothing_lost_or_half_written(stage, tmp_path) == "2"
    champion = "2"
    for n, (where, find) in enumerate(KILL_POINTS.items(), start=3):
        kill_at = find(counted)
        code, reached = _run(stage, n, champion, kill_at=kill_at)
        assert code == -9, f"{where}: the step was not killed (exit {code})"
        assert [k for k, _ in reached] == [k for k, _ in counted[:kill_at]], where
        # the new version is champion once the champion alias moved, not before
        after_kill = _assert_nothing_lost_or_half_written(stage, tmp_path)
        if kill_at <= _last_alias(counted):
            assert after_kill == champion, where
        else:
            assert after_kill != champion, where

        _run(stage, n, champion)  # the retry, as KFP's set_retry runs it
        _assert_recovered(stage, n, champion, tmp_path)
        champion = _assert_nothing_lost_or_half_written(stage, tmp_path)
