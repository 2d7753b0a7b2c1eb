"""The ``finalize_monitoring`` exit component: success changes nothing; a failed run after a
broken deploy restores the champion the run started with."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

from autokfp.components import finalize_monitoring
from autokfp.governance.audit import read_events
from autokfp.modeling import registry


def _status(state: str, error: str = "", task: str = "") -> SimpleNamespace:
    """What KFP hands the exit task (dsl.PipelineTaskFinalStatus's fields it reads)."""
    return SimpleNamespace(state=state, error_message=error, pipeline_task_name=task)


def test_finalize_monitoring_restores_the_champion_after_a_broken_deploy(monitored,
                                                                         tmp_path) -> None:
    settings = monitored.settings
    broken = tmp_path / "broken-model"
    shutil.copytree(monitored.champion.paths.model, broken)
    (broken / "artifacts" / "extra.txt").write_text("a different package")
    registered = registry.register_model(broken, "churn-test", {"test_auc": 0.9}, {}, {},
                                         promote=True, decision="better", compared_champion="1",
                                         settings=settings)
    assert registered.version == "2"  # champion now, but its deploy never finished

    assert finalize_monitoring.python_func(config=monitored.config, run_id="run-1",
                                           status=_status("SUCCEEDED")) == ""
    restored = finalize_monitoring.python_func(
        config=monitored.config, run_id="run-1",
        status=_status("FAILED", "deploy-model crashed", "deploy-model"))
    assert restored == "1"
    client = registry.configure(settings)
    assert str(registry.champion_version(client, "churn-test").version) == "1"
    assert [e["kind"] for e in read_events(settings)][-2:] == ["monitoring.run_failed",
                                                               "deploy.rolled_back"]


def test_the_exit_task_applies_the_run_form_and_skips_a_form_that_does_not_resolve(
        monitored) -> None:
    settings = monitored.settings
    before = len(read_events(settings))
    # the form names the watched model over the raw config, as the first task does
    form_config = {k: v for k, v in monitored.config.items() if k != "name"}
    assert finalize_monitoring.python_func(
        config=form_config, run_id="run-form", model_name="churn-test",
        status=_status("FAILED", "collect-predictions crashed", "collect-predictions")) == ""
    events = read_events(settings)[before:]
    assert [(e["kind"], e["model"]) for e in events] == [("monitoring.run_failed", "churn-test")]
    # a form the first task refused: nothing ran, nothing recorded, the exit task succeeds
    assert finalize_monitoring.python_func(
        config={}, run_id="run-bad", model_name="Bad Name",
        status=_status("FAILED", "resolve-config failed", "resolve-config")) == ""
    assert len(read_events(settings)) == before + 1
