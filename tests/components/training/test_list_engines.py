"""The ``list_engines`` component: the engines the training fan-out runs, from the config."""

from __future__ import annotations

import pytest

from autokfp.components import list_engines
from autokfp.errors import ConfigError
from tests.conftest import small_config


def _names(items: list[dict]) -> list[str]:
    return [item["engine"] for item in items]


def test_list_engines_reads_the_configured_engines_in_order(tmp_path) -> None:
    config = small_config(tmp_path, engines=["autokeras", "h2o"]).to_dict()
    assert _names(list_engines.python_func(config=config)) == ["autokeras", "h2o"]
    assert _names(list_engines.python_func(config=small_config(tmp_path).to_dict())) == [
        "h2o", "autokeras"]


def test_each_engine_gets_only_what_its_training_reads(tmp_path) -> None:
    config = small_config(tmp_path).to_dict()
    h2o, autokeras = list_engines.python_func(config=config)
    assert set(h2o["settings"]) == {"budget", "engines", "primary_metric", "calibration"}
    assert h2o["settings"]["engines"] == {"h2o": config["engines"]["h2o"]}
    assert list(autokeras["settings"]["engines"]) == ["autokeras"]
    assert h2o["settings"]["budget"] == config["budget"]
    # the train step reads these settings as they are
    from autokfp.config import parse_training_settings

    assert parse_training_settings(h2o["settings"]).engine_names() == ["h2o"]
    # a change to what training does not read (deploy, governance, another engine's
    # settings) leaves an engine's settings, the GPU task's cache key, as they were
    changed = {**config, "deploy": {"canary_traffic_percent": 50},
               "governance": {"require_approval": True},
               "engines": {**config["engines"], "autokeras": {"max_trials": 2}}}
    assert list_engines.python_func(config=changed)[0] == h2o
    slower = {**config, "budget": {**config["budget"], "max_runtime_secs": 99}}
    assert list_engines.python_func(config=slower)[0] != h2o


def test_an_engine_that_is_not_installed_fails_before_any_training(tmp_path) -> None:
    config = small_config(tmp_path).to_dict()
    config["engines"] = {"h2o": {}, "lightgbm": {}}
    with pytest.raises(ConfigError, match="unknown training engine 'lightgbm'"):
        list_engines.python_func(config=config)


def test_list_engines_alone_takes_typed_engines_and_budget(tmp_path) -> None:
    """No run config: the default engines, or the typed ones with the typed budget; over a
    config, the typed inputs win and the config's engine settings stay."""
    from autokfp.engine_registry import default_engines

    assert _names(list_engines.python_func()) == list(default_engines())
    (h2o,) = list_engines.python_func(engines="h2o", budget_seconds=30)
    assert h2o["engine"] == "h2o" and h2o["settings"]["budget"]["max_runtime_secs"] == 30
    config = small_config(tmp_path).to_dict()
    (kept,) = list_engines.python_func(config=config, engines="h2o")
    assert kept["settings"]["engines"]["h2o"] == config["engines"]["h2o"]
    with pytest.raises(ConfigError, match="unknown training engine 'nope'"):
        list_engines.python_func(engines="h2o, nope")
    with pytest.raises(ConfigError, match="max_runtime_secs"):
        list_engines.python_func(budget_seconds=0)
