"""The ``list_engines`` component: the engines the training fan-out runs, from the config."""

from __future__ import annotations

import pytest

from autokfp.errors import ConfigError
from components import list_engines
from tests.conftest import small_config


def test_list_engines_reads_the_configured_engines_in_order(tmp_path) -> None:
    config = small_config(tmp_path, engines=["autokeras", "h2o"]).to_dict()
    assert list_engines.python_func(config=config) == ["autokeras", "h2o"]
    assert list_engines.python_func(config=small_config(tmp_path).to_dict()) == ["h2o",
                                                                                 "autokeras"]


def test_an_engine_that_is_not_installed_fails_before_any_training(tmp_path) -> None:
    config = small_config(tmp_path).to_dict()
    config["engines"] = {"h2o": {}, "lightgbm": {}}
    with pytest.raises(ConfigError, match="unknown training engine 'lightgbm'"):
        list_engines.python_func(config=config)
